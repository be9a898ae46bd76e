"""Procedurally generated math word problems: the offline pools and eval sets. Two families:
``multistep`` (pool=synthetic, task limo_synthetic: three- and four-step problems) and
``arithmetic`` (pool=arithmetic, task limo_arithmetic: one- and two-step problems with small
numbers, the embedded demo's).

Every problem comes with an exact integer answer and three solutions:
``answer_only`` (just the boxed answer), ``short`` (the computation steps) and
``long`` (the steps explained, then the result checked another way). Generation
is seeded and deterministic. A problem belongs to the eval split or the pool
split by a hash of its template and parameters, so the two never share a
problem, whatever sizes and seeds are asked for.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator

from limo_exp.data.records import Record, Solution

NAMES = [
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jun",
    "Kira",
    "Liam",
    "Mona",
    "Nils",
]
EVAL_SHARE = 5  # one key in EVAL_SHARE goes to the eval split

# A template draws parameters and returns (key, problem, answer, steps, check).
Template = Callable[[random.Random], tuple[tuple, str, int, list[str], str]]


def _shopping(rng: random.Random):
    name, a, p, b, q = (
        rng.choice(NAMES),
        rng.randint(2, 9),
        rng.randint(2, 12),
        rng.randint(2, 9),
        rng.randint(1, 6),
    )
    cost = a * p + b * q
    bill = next(x for x in (20, 50, 100, 200) if x > cost)
    problem = (
        f"{name} buys {a} notebooks at ${p} each and {b} pens at ${q} each. "
        f"{name} pays with a ${bill} bill. How many dollars of change does {name} get?"
    )
    steps = [
        f"The notebooks cost {a} x {p} = {a * p} dollars.",
        f"The pens cost {b} x {q} = {b * q} dollars.",
        f"Together they cost {a * p} + {b * q} = {cost} dollars.",
        f"The change is {bill} - {cost} = {bill - cost} dollars.",
    ]
    check = f"Check: {cost} + {bill - cost} = {bill}, which is the bill, so the change is right."
    return ("shop", name, a, p, b, q), problem, bill - cost, steps, check


def _tank(rng: random.Random):
    r, t, d = rng.randint(3, 15), rng.randint(4, 20), rng.randint(1, 30)
    start = rng.randint(0, 50)
    filled = start + r * t
    d = min(d, filled)
    problem = (
        f"A tank holds {start} liters of water. It is filled at {r} liters per minute for {t} minutes, "
        f"and then {d} liters are drained. How many liters are in the tank now?"
    )
    steps = [
        f"Filling adds {r} x {t} = {r * t} liters.",
        f"After filling the tank holds {start} + {r * t} = {filled} liters.",
        f"After draining it holds {filled} - {d} = {filled - d} liters.",
    ]
    check = f"Check: {filled - d} + {d} - {r * t} = {start}, the starting amount, so the answer holds."
    return ("tank", start, r, t, d), problem, filled - d, steps, check


def _ages(rng: random.Random):
    name, k, b, y = rng.choice(NAMES), rng.randint(2, 5), rng.randint(2, 12), rng.randint(1, 15)
    problem = (
        f"{name} is {k} times as old as a brother who is {b} years old. "
        f"In {y} years, what will be the sum of their ages?"
    )
    steps = [
        f"{name} is {k} x {b} = {k * b} years old.",
        f"In {y} years {name} will be {k * b} + {y} = {k * b + y} and the brother {b} + {y} = {b + y}.",
        f"The sum is {k * b + y} + {b + y} = {k * b + b + 2 * y}.",
    ]
    check = f"Check: today the sum is {k * b + b}; each of the two ages grows by {y}, so {k * b + b} + 2 x {y} = {k * b + b + 2 * y}."
    return ("ages", name, k, b, y), problem, k * b + b + 2 * y, steps, check


def _rectangle(rng: random.Random):
    length, w = rng.randint(3, 30), rng.randint(2, 30)
    perimeter = 2 * (length + w)
    problem = f"A rectangle has perimeter {perimeter} cm and length {length} cm. What is its area in square centimeters?"
    steps = [
        f"Half the perimeter is {perimeter} / 2 = {length + w} cm, the length plus the width.",
        f"The width is {length + w} - {length} = {w} cm.",
        f"The area is {length} x {w} = {length * w} square centimeters.",
    ]
    check = f"Check: 2 x ({length} + {w}) = {perimeter}, the given perimeter, so the width and the area are right."
    return ("rect", length, w), problem, length * w, steps, check


def _savings(rng: random.Random):
    name, s, w, spend = rng.choice(NAMES), rng.randint(3, 25), rng.randint(2, 16), rng.choice([2, 3, 4])
    total = s * w
    total -= total % spend
    s_total = total
    problem = (
        f"{name} has saved {s_total} dollars and then spends 1/{spend} of the savings on a gift. "
        f"{name} then saves {s} dollars a week for {w} more weeks. How many dollars does {name} have now?"
    )
    spent = s_total // spend
    left = s_total - spent
    steps = [
        f"The gift costs {s_total} / {spend} = {spent} dollars.",
        f"After the gift {name} has {s_total} - {spent} = {left} dollars.",
        f"Saving {s} x {w} = {s * w} more gives {left} + {s * w} = {left + s * w} dollars.",
    ]
    check = (
        f"Check: {left + s * w} - {s * w} + {spent} = {s_total}, the starting savings, so the total is right."
    )
    return ("save", name, s_total, spend, s, w), problem, left + s * w, steps, check


def _sequence(rng: random.Random):
    a, d, n = rng.randint(1, 20), rng.randint(1, 9), rng.randint(4, 15)
    last = a + (n - 1) * d
    total = n * (a + last) // 2
    problem = f"What is the sum of the first {n} terms of the arithmetic sequence that starts at {a} and increases by {d} each term?"
    steps = [
        f"The last term is {a} + ({n} - 1) x {d} = {last}.",
        f"The sum is {n} x ({a} + {last}) / 2 = {total}.",
    ]
    check = f"Check: the mean term is ({a} + {last}) / 2 and there are {n} terms, so {n} x {(a + last) / 2:g} = {total}."
    return ("seq", a, d, n), problem, total, steps, check


TEMPLATES: list[Template] = [_shopping, _tank, _ages, _rectangle, _savings, _sequence]
SUBJECTS = ["arithmetic", "rates", "ages", "geometry", "fractions", "sequences"]


# ---- the "arithmetic" family: one- and two-step problems a small instruct model can do in its
# head, used by the embedded demo (pool=arithmetic, task limo_arithmetic) to show format learning.
ITEMS = ["apples", "stickers", "marbles", "books", "pencils", "cards", "shells", "coins"]


def _add(rng: random.Random):
    name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 20), rng.randint(2, 20)
    problem = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
    return (
        ("add", name, item, a, b),
        problem,
        a + b,
        [f"{a} + {b} = {a + b}."],
        f"Check: {a + b} - {b} = {a}.",
    )


def _sub(rng: random.Random):
    name, item, b, c = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 15), rng.randint(1, 15)
    a = b + c
    problem = f"{name} has {a} {item} and gives {b} away. How many {item} does {name} have left?"
    return ("sub", name, item, a, b), problem, c, [f"{a} - {b} = {c}."], f"Check: {c} + {b} = {a}."


def _mul(rng: random.Random):
    item, a, b = rng.choice(ITEMS), rng.randint(2, 9), rng.randint(2, 9)
    problem = f"A box holds {a} {item}. How many {item} are in {b} boxes?"
    return ("mul", item, a, b), problem, a * b, [f"{b} x {a} = {a * b}."], f"Check: {a * b} / {b} = {a}."


def _two_step(rng: random.Random):
    name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 12), rng.randint(2, 12)
    c = rng.randint(1, a + b - 1)
    problem = f"{name} has {a} {item}, gets {b} more and then gives {c} away. How many {item} are left?"
    steps = [f"{a} + {b} = {a + b}.", f"{a + b} - {c} = {a + b - c}."]
    return ("two", name, item, a, b, c), problem, a + b - c, steps, f"Check: {a + b - c} + {c} - {b} = {a}."


FAMILIES = {  # family -> (templates, their subjects)
    "multistep": (TEMPLATES, SUBJECTS),
    "arithmetic": ([_add, _sub, _mul, _two_step], ["addition", "subtraction", "multiplication", "two_step"]),
}


def _split_of(key: tuple) -> str:
    h = int(hashlib.sha256(repr(key).encode()).hexdigest()[:8], 16)
    return "eval" if h % EVAL_SHARE == 0 else "pool"


def _solutions(steps: list[str], check: str, answer: int) -> list[Solution]:
    boxed = f"\\boxed{{{answer}}}"
    short = "\n".join(steps) + f"\nThe answer is {boxed}."
    long = (
        "Let me work through this step by step.\n"
        + "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))
        + f"\nWait, let me verify the result. {check}\n"
        + f"So the final answer is {boxed}."
    )
    return [
        Solution(text=boxed, kind="answer_only", source="synthetic"),
        Solution(text=short, kind="short", source="synthetic"),
        Solution(text=long, kind="long", source="synthetic"),
    ]


def _generate(split: str, seed: int, family: str = "multistep") -> Iterator[Record]:
    if family not in FAMILIES:
        raise ValueError(f"unknown synthetic family {family!r}; valid: {sorted(FAMILIES)}")
    templates, subjects = FAMILIES[family]
    prefix = "limo-synthetic" if family == "multistep" else f"limo-{family}"
    rng = random.Random(f"{prefix}-{split}-{seed}")
    seen: set[str] = set()
    while True:
        i = rng.randrange(len(templates))
        key, problem, answer, steps, check = templates[i](rng)
        if _split_of(key) != split:
            continue
        rec = Record.new(
            problem,
            str(answer),
            _solutions(steps, check, answer),
            source="synthetic",
            subject=subjects[i],
            difficulty=len(steps),
        )
        if rec.id in seen:
            continue
        seen.add(rec.id)
        yield rec


def make_pool(n: int, seed: int = 0, family: str = "multistep") -> list[Record]:
    """``n`` distinct pool problems; the first k of make_pool(n) are make_pool(k) for any k <= n."""
    gen = _generate("pool", seed, family)
    return [next(gen) for _ in range(n)]


def make_eval_set(n: int, seed: int = 0, family: str = "multistep") -> list[dict]:
    """``n`` eval items ``{"id", "problem", "answer"}``, disjoint from every pool by construction."""
    gen = _generate("eval", seed, family)
    return [{"id": r.id, "problem": r.problem, "answer": r.answer} for r in (next(gen) for _ in range(n))]
