"""Teacher-written solutions (``limo-exp distill``): a model solves a pool's problems (``cot``) or
explains their gold answers (``rationalize``), k samples each, through evaluation's generation
engines and response store; a solution is kept only when the evaluation grader finds its answer
correct. The result is a pool whose records carry solutions of kind ``teacher:<model>:<mode>``
and the teacher's cost, and the teacher's pass rate per problem (``selection=difficult``)."""

from limo_exp.distill.teacher import DistillResult, distill, kind_of, prompt_text, write_outputs

__all__ = ["DistillResult", "distill", "kind_of", "prompt_text", "write_outputs"]
