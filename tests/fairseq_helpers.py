"""Build fairseq tasks, models and criterions in-process, as the CLIs do."""

from __future__ import annotations

from .data import PLUGIN

TINY_NMT = [
    "--encoder-embed-dim", "40", "--decoder-embed-dim", "40",
    "--encoder-hidden-size", "48", "--decoder-hidden-size", "48",
]  # fmt: skip


def build(data, *extra: str, task: str = "translation", split: str = "valid"):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data), "--user-dir", str(PLUGIN), "--task", task, *extra])
    cfg = convert_namespace_to_omegaconf(args)
    t = tasks.setup_task(cfg.task)
    model = t.build_model(cfg.model)
    criterion = t.build_criterion(cfg.criterion)
    t.load_dataset(split)
    return t, model, criterion


def sample(task, split: str = "valid", n: int = 8, start: int = 0):
    ds = task.dataset(split)
    return ds.collater([ds[i] for i in range(start, start + n)])
