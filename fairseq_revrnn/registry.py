"""Registration with fairseq that tolerates the plugin being imported twice.

fairseq refuses a second registration under the same name. Importing the
plugin again (a reload, or ``--user-dir`` plus an installed copy imported
under the same name) must not fail, so each helper skips names fairseq
already knows.
"""

from __future__ import annotations

from fairseq.criterions import CRITERION_REGISTRY, register_criterion
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY, register_model, register_model_architecture
from fairseq.tasks import TASK_REGISTRY, register_task


def _keep(obj):
    return obj


def model(name: str, dataclass=None):
    return _keep if name in MODEL_REGISTRY else register_model(name, dataclass=dataclass)


def architecture(model_name: str, arch_name: str):
    return _keep if arch_name in ARCH_MODEL_REGISTRY else register_model_architecture(model_name, arch_name)


def criterion(name: str, dataclass=None):
    return _keep if name in CRITERION_REGISTRY else register_criterion(name, dataclass=dataclass)


def task(name: str, dataclass=None):
    return _keep if name in TASK_REGISTRY else register_task(name, dataclass=dataclass)
