"""Argument types shared by the management commands: a bad value is a usage error, not a
traceback."""

import argparse
from collections.abc import Callable


def positive_number(unit: str, most: float) -> Callable[[str], float]:
    """An argparse type: a number of `unit` above 0 and at most `most` (NaN and infinity
    included among the refused: a cutoff computed from them cannot be a date)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value <= most:
            raise argparse.ArgumentTypeError(
                f"expected a number of {unit} above 0 and at most {most:g}, not {text!r}"
            )
        return value

    return parse
