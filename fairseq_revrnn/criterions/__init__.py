"""fairseq criterions that log the reversible models' memory savings."""

from ..requirements import require_fairseq

require_fairseq()

from . import rev_cross_entropy  # noqa: E402,F401  (registers the criterions)
