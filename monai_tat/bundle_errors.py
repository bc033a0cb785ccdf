"""One-line errors for runs of the package's MONAI bundles (``python -m monai.bundle run ...``).

The bundles' configs import this module first. A mistake in the data (a datalist naming a missing
or truncated file, an item without a task, an unknown task, an empty list) is detected where the
data is read and raised as :class:`~monai_tat.errors.UserInputError`; MONAI wraps it in its own
exceptions, and Python would print 50 to 150 lines of traceback with the cause buried inside.
Here the run instead ends with the cause on one line::

    monai-tat bundle: error: datalist /data/datalist.json 'testing' item 0: image file not found: ...

Set the environment variable ``MONAI_TAT_TRACEBACK=1`` to see the full traceback as well.
Importing the module also silences MONAI's notice that the optional nvImageCodec decoder is absent
(it means nothing to a user of these bundles).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from types import TracebackType

from monai_tat.errors import UserInputError

__all__ = ["user_error_in_chain", "install"]


def user_error_in_chain(err: BaseException | None) -> UserInputError | None:
    """The first :class:`UserInputError` among ``err`` and its causes / contexts, if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserInputError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


# MONAI's SaveImage re-raises writer errors as text inside a new RuntimeError (no exception chain).
_ERROR_IN_TEXT = re.compile(r"monai_tat\.[\w.]*(?:UserInputError|IncompleteFileError): (.+)")


def _excepthook(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
    cause = user_error_in_chain(err)
    text = str(cause) if cause is not None else None
    if text is None:
        found = _ERROR_IN_TEXT.findall(str(err))
        text = found[-1] if found else None
    if text is None or os.environ.get("MONAI_TAT_TRACEBACK"):
        _previous_hook(kind, err, tb)
    if text is not None:
        print(f"monai-tat bundle: error: {' '.join(text.split())}", file=sys.stderr)


_previous_hook = sys.excepthook


def install() -> None:
    """Report user errors in one line at the end of the run; silence the nvImageCodec notices."""
    sys.excepthook = _excepthook
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


install()
