"""The paper's reported results (MacKay et al. 2018, appendix G), for tables beside ours."""

from __future__ import annotations

BITS = ("1", "2", "3", "5", "none")

# Table 4: Multi30K validation BLEU, per attention type, for 1, 2, 3, 5 bits and no limit.
_MULTI30K_VALID_BLEU = {
    "rev_lstm": {
        "20H": (28.51, 29.72, 30.65, 29.82, 29.11),
        "100H": (28.10, 35.52, 36.13, 34.97, 35.14),
        "300H": (26.46, 36.73, 37.04, 37.32, 37.27),
        "Emb": (31.27, 30.96, 31.41, 31.31, 31.95),
        "Emb+20H": (36.33, 36.75, 37.54, 36.89, 36.51),
    },
    "rev_gru": {
        "20H": (25.96, 25.86, 27.25, 27.13, 26.96),
        "100H": (32.52, 32.86, 31.08, 31.16, 31.87),
        "300H": (34.26, 34.00, 33.02, 33.08, 32.24),
        "Emb": (27.57, 27.59, 28.03, 27.24, 28.07),
        "Emb+20H": (33.67, 34.94, 34.36, 34.87, 35.12),
    },
}


def multi30k_valid_bleu(model: str, attention: str, bits: str) -> float | None:
    """The paper's validation BLEU for one grid cell (paper-sized models), or None if it has none."""
    row = _MULTI30K_VALID_BLEU.get(model, {}).get(attention)
    return row[BITS.index(bits)] if row is not None and bits in BITS else None


# Table 2 / section 9 of the spec: PTB validation perplexity of the 2-layer (1150/650) RevLSTM per
# bit limit, with its memory savings, and of the standard 2-layer LSTM.
_PTB_REV_LSTM = {"2": (74.7, 14.0), "3": (72.8, 10.0), "5": (72.9, 7.3), "none": (72.9, 4.9)}
PTB_LSTM_VALID_PPL = 73.0


def ptb_valid_ppl(model: str, cell: str, bits: str) -> tuple[float, float | None] | None:
    """The paper's PTB validation perplexity and savings (None for the LSTM) for a 2-layer LSTM-type model."""
    if model == "baseline":
        return PTB_LSTM_VALID_PPL, None
    if model == "rev" and cell == "lstm":
        return _PTB_REV_LSTM.get(bits)
    return None
