"""fairseq tasks: ``rnn_synthetic``, synthetic memory problems generated from a seed."""

from ..requirements import require_fairseq

require_fairseq()

from . import rnn_synthetic  # noqa: E402,F401  (registers the task)
