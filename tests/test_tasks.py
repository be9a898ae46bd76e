"""The limo_ lm-eval tasks: every YAML registers, data arrives through metadata, and an oracle
model with a known pattern of right and wrong samples gets exactly the expected numbers."""

from __future__ import annotations

import pytest
from conftest import GPQA_FILE, needs_eval_data

from limo_exp.evaluation.grading import TRUNCATED
from limo_exp.evaluation.metrics import sampling_metrics
from limo_exp.evaluation.registry import TASKS_DIR, groups, tasks
from limo_exp.evaluation.tasks import utils as task_utils

TASKS, GROUPS = tasks(), groups()
PAPER_TASKS = GROUPS["limo_paper"]


def _manager(**metadata):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)


def test_every_task_and_group_registers():
    """A YAML that fails to parse is skipped silently by lm-eval: check the index by name."""
    tm = _manager()
    assert set(TASKS) <= set(tm.all_subtasks)
    assert set(GROUPS) <= set(tm.all_groups)
    yamls = {p.stem for p in TASKS_DIR.glob("limo_*.yaml")}
    assert yamls == set(TASKS) | set(GROUPS)
    # the registry reads the YAMLs: the group's members in the paper's order (Table 2)
    assert (
        tuple(f"limo_{b}" for b in ("aime24", "aime25", "amc23", "math500", "olympiadbench", "gpqa_diamond"))
        == PAPER_TASKS
    )
    assert set(TASKS) == set(PAPER_TASKS) | {"limo_synthetic", "limo_arithmetic"}


@needs_eval_data
def test_group_runs_the_six_paper_tasks(eval_data_dir):
    loaded = _manager(data_dir=str(eval_data_dir)).load(["limo_paper"])
    assert set(loaded["tasks"]) == set(PAPER_TASKS)
    assert set(loaded["group_map"]["limo_paper"]) == set(PAPER_TASKS)


@needs_eval_data
@pytest.mark.parametrize(
    "task,count",
    [
        ("limo_aime24", 30),
        ("limo_aime25", 30),
        ("limo_amc23", 40),
        ("limo_math500", 500),
        ("limo_olympiadbench", 675),
        ("limo_gpqa_diamond", 12),
        ("limo_synthetic", 7),
        ("limo_arithmetic", 7),
    ],
)
def test_task_docs_come_from_metadata(task, count, eval_data_dir):
    tm = _manager(data_dir=str(eval_data_dir), synthetic_n=7, instruction="Box it.")
    t = tm.load([task])["tasks"][task]
    docs = list(t.eval_docs)
    assert len(docs) == count
    assert all(d["prompt"].endswith("\n\nBox it.") for d in docs)
    assert t.config.output_type == "generate_until"
    assert t.VERSION == 1.0


def test_default_instruction_is_limos():
    docs = task_utils.docs_for("synthetic", synthetic_n=2)
    assert docs[0]["prompt"].endswith(
        "Please reason step by step, and put your final answer within \\boxed{}."
    )


def test_gpqa_prompt_lists_the_shuffled_options():
    docs = task_utils.docs_for("gpqa_diamond", data_dir=str(GPQA_FILE.parent), gpqa_seed=0)
    d = docs[0]
    assert d["kind"] == "choice"
    for letter, choice in zip("ABCD", d["choices"]):
        assert f"({letter}) {choice}" in d["prompt"]


def test_filter_and_process_results():
    doc = {"kind": "math", "answer": "2", "answers": ["2"]}
    cut = "I think it is \\boxed{2} but let me check" + TRUNCATED  # ran out of tokens: no answer
    verdicts = task_utils.grade_filter(
        [["\\boxed{2}", "\\boxed{3}", "no box", "<think>\\boxed{2}", cut]], [doc]
    )
    assert [v["correct"] for v in verdicts[0]] == [True, False, False, False, False]
    assert [v["status"] for v in verdicts[0]] == ["ok", "ok", "no_answer", "no_answer", "truncated"]
    assert verdicts[0][4]["response"] == "I think it is \\boxed{2} but let me check"  # the mark is removed
    assert task_utils.process_results(doc, verdicts[0:1]) == {
        "exact_match": 0.2,
        "no_answer": 0.6,
        "timeout": 0.0,
        "truncated": 0.2,
    }
    gpqa = {"kind": "choice", "answer": "C", "answers": ["C"]}
    assert task_utils.grade_one("Answer: (C)", gpqa)["correct"] is True


# ---------------------------------------------------------------- oracle model through lm-eval


def _oracle(pattern):
    """An LM answering sample j of question i right when pattern[i % len(pattern)][j] is 1."""
    from lm_eval.api.model import LM

    class Oracle(LM):
        def generate_until(self, requests, disable_tqdm=False):
            seen: dict[int, int] = {}
            out = []
            for req in requests:
                j = seen.get(id(req), 0)
                seen[id(req)] = j + 1
                doc = req.doc
                right = pattern[req.doc_id % len(pattern)][j]
                if doc["kind"] == "choice":
                    letter = doc["answer"] if right else "ABCD"[("ABCD".index(doc["answer"]) + 1) % 4]
                    out.append(f"<think>hmm (A)?</think> Answer: {letter}")
                elif right:
                    out.append(f"<think>\\boxed{{0}}</think> So \\boxed{{{', '.join(doc['answers'])}}}.")
                else:
                    out.append("I give up." if j % 2 else "\\boxed{-123456789}")
            return out

        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

    return Oracle()


def _run(tasks, pattern, repeats, limit, **metadata):
    import lm_eval

    tm = _manager(**metadata)
    loaded = tm.load(tasks)
    for t in loaded["tasks"].values():
        t.set_config(key="repeats", value=repeats)
    objs = [loaded["groups"].get(t) or loaded["tasks"][t] for t in tasks]
    return lm_eval.simple_evaluate(
        model=_oracle(pattern),
        tasks=objs,
        task_manager=tm,
        limit=limit,
        log_samples=True,
        bootstrap_iters=100,
    )


def test_oracle_numbers_through_lm_eval():
    # 4 questions x 3 samples: correct counts 3, 1, 0, 2
    pattern = [[1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    out = _run(["limo_synthetic"], pattern, repeats=3, limit=4, synthetic_n=4)
    res = out["results"]["limo_synthetic"]
    assert res["exact_match,none"] == pytest.approx((1 + 1 / 3 + 0 + 2 / 3) / 4)
    # wrong samples alternate between a wrong box (j even) and no box (j odd): 3 of 12 have none
    assert res["no_answer,none"] == pytest.approx((0 + 0 + 1 / 3 + 1 / 3) / 4)
    assert res["timeout,none"] == 0.0
    per_q = [
        s["filtered_resps"][0] for s in sorted(out["samples"]["limo_synthetic"], key=lambda s: s["doc_id"])
    ]
    m = sampling_metrics(per_q, (1, 2, 3))
    assert m["pass_at_1"] == pytest.approx(res["exact_match,none"])
    assert m["pass_at_2"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert m["pass_at_3"] == pytest.approx(3 / 4)
    # maj@3: q0 right (3 votes); q1 the wrong box of samples 0 and 2 outvotes the right one;
    # q2 wrong; q3 two right votes against one sample with no answer (which does not vote)
    assert m["maj_at_3"] == pytest.approx(2 / 4)
    assert m["mean_at_n_stderr"] == pytest.approx(res["exact_match_stderr,none"])


@needs_eval_data
def test_oracle_is_perfect_on_every_paper_task(eval_data_dir):
    out = _run(["limo_paper"], [[1]], repeats=1, limit=25, data_dir=str(eval_data_dir))
    for task in PAPER_TASKS:
        assert out["results"][task]["exact_match,none"] == 1.0, task
    assert out["results"]["limo_paper"]["exact_match,none"] == 1.0
    wrong = _run(["limo_gpqa_diamond"], [[0]], repeats=1, limit=None, data_dir=str(eval_data_dir))
    assert wrong["results"]["limo_gpqa_diamond"]["exact_match,none"] == 0.0
