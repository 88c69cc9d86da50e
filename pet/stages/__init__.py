"""The three stages, in order: teachers (A) -> RUN/teachers -> labelling (B) -> RUN/labels -> distillation (C) -> RUN/student.

Each reads only the artifact folder of the stage before it; docs/architecture.md has the contracts.
"""
