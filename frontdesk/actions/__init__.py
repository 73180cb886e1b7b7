"""Actions: the only code that changes state.

`check_*` functions validate and raise `AppError`; `do_*` functions change state inside the caller's
`session_scope()`, record events (published on commit) and never commit themselves.
"""
