"""System prompts. "full" is NeMo Gym's text word for word; "short" says the same in fewer
tokens for a small model."""
from __future__ import annotations

import datetime as dt

FULL = "full"
SHORT = "short"
PROMPT_VARIANTS = (FULL, SHORT)


def system_prompt(now: dt.datetime, variant: str = FULL) -> str:
    """The system message for a sandbox whose clock reads `now`."""
    day = f"{now:%A}, {now:%Y-%m-%d}"
    if variant == FULL:
        return (f"Today's date is {day} and the current time is {now:%H:%M:%S}. Remember the current date "
                "and time when answering queries. Meetings must not start before 9am or end after 6pm.")
    if variant == SHORT:
        return f"Now: {day} {now:%H:%M:%S}. Meetings run between 9am and 6pm."
    raise ValueError(f"unknown system prompt variant {variant!r}; expected one of {PROMPT_VARIANTS}")
