"""fairseq models: ``rev_rnn`` (translation) and ``rev_rnn_lm`` (language model)."""

from ..requirements import require_fairseq

require_fairseq()

from . import rev_rnn, rev_rnn_lm  # noqa: E402,F401  (registers the models)
