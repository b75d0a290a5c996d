"""fairseq models: ``rev_rnn`` (translation) and ``rev_rnn_lm`` (language model)."""

from ..requirements import require_fairseq

require_fairseq()

from . import rev_rnn, rev_rnn_lm  # noqa: E402,F401  (registers the models)
from .g2_lstm import G2LSTMLanguageModel, G2LSTMModel  # noqa: E402,F401  (issue 11)
from .nru import NRULanguageModel, NRUModel  # noqa: E402,F401  (issue 11)
