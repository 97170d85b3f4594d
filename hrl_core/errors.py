"""User-facing errors.

Anything a researcher can fix (a missing file, a wrong flag, a checkpoint for the
wrong environment) raises :class:`HrlError` with a one-line message that names the
fix. The CLI prints it without a traceback; genuine bugs still raise normally.
"""


class HrlError(Exception):
    """An error caused by the user's inputs; its message is one line naming the fix."""


class DivergenceError(HrlError):
    """Training produced a non-finite quantity (loss, Q-value or action)."""

    def __init__(self, step: int, quantity: str, bonus: bool = True):
        self.step = step
        self.quantity = quantity
        advice = "lower the learning rate or bonus_coeff" if bonus else "lower the learning rate"
        super().__init__(
            f"training diverged at online step {step}: {quantity} is not finite "
            f"({advice}, or resume from the last snapshot)"
        )


class AlreadyComplete(HrlError):
    """The run is already complete (raised instead of returning it when a grid asks)."""
