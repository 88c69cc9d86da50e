"""Loading models and tokenizers, choosing devices and numeric precision.

transformers 5 loads a checkpoint in its stored dtype unless told otherwise (the shared MiniLM is
stored in float16), so the load dtype is always chosen explicitly: float32 weights everywhere, with
bf16/fp16 autocast on CUDA when asked for. bf16 autocast on CPU is very slow, so CPU runs use fp32.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from pet.errors import PetError

log = logging.getLogger("pet")


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return allow_tf32(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise PetError(f"runtime.device: '{requested}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PetError(f"runtime.device is '{requested}' but CUDA is not available; use auto or cpu")
    return allow_tf32(device)


def allow_tf32(device: torch.device) -> torch.device:
    """On CUDA, float32 matmuls (``runtime.precision: fp32``, and the float32 parts under autocast) use
    TF32 tensor cores: about 8x the throughput of strict fp32 on Ampere and later, at 10-bit mantissa
    products with float32 accumulation, which fine-tuning does not notice. The CPU is unaffected."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for training and inference, or None for plain fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16 if precision == "auto" else None


def autocast(device: torch.device, precision: str):
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def autocast_factory(device: torch.device, precision: str):
    """A callable that opens a fresh autocast context each time (scoring loops enter one per batch)."""
    return lambda: autocast(device, precision)


def check_model_path(name: str) -> None:
    """Fail early and clearly for a local path that does not exist (a Hub id is left to transformers)."""
    looks_local = name.startswith((".", "/", "~")) or os.sep in name and not _looks_like_hub_id(name)
    if looks_local and not Path(name).expanduser().exists():
        raise PetError(f"model '{name}' not found: no such folder")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists()


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    quiet_transformers()
    check_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as err:
        raise PetError(f"cannot load a tokenizer from '{name}': {first_line(err)}") from None


def load_model_config(name: str, trust_remote_code: bool = False, hint: str = ""):
    """The AutoConfig of a local folder or Hub id; a failure becomes one PetError line (plus ``hint``)."""
    from transformers import AutoConfig

    quiet_transformers()
    check_model_path(name)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as err:
        raise PetError(f"cannot load model config from '{name}': {first_line(err)}{hint}") from None


def load_masked_lm(name: str, device: torch.device, trust_remote_code: bool = False, warn_new_head: bool = True):
    """Load an AutoModelForMaskedLM in float32 and warn if its MLM head was newly initialised."""
    model, new_head = load_masked_lm_and_new_head(name, device, trust_remote_code)
    if warn_new_head:
        warn_if_new_head(name, new_head)
    return model


def warn_if_new_head(name: str, new_head: list[str]) -> None:
    if new_head:
        log.warning(
            "the masked-LM head of '%s' was newly initialised (%d weights missing, e.g. %s): PET relies on a "
            "pretrained MLM head, so zero-shot scores are random and few-shot accuracy will suffer",
            name, len(new_head), new_head[0],
        )


def load_masked_lm_and_new_head(name: str, device: torch.device, trust_remote_code: bool = False):
    """(the AutoModelForMaskedLM in float32, the sorted names of its MLM-head weights the checkpoint lacked,
    which transformers initialised at random; empty for a pretrained head)."""
    from transformers import AutoModelForMaskedLM

    config = load_model_config(name, trust_remote_code)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            name, config=config, dtype=torch.float32, output_loading_info=True, trust_remote_code=trust_remote_code
        )
    except ValueError as err:
        raise PetError(f"'{name}' is not a masked language model ({config.model_type}): {first_line(err)}") from None
    except Exception as err:
        raise PetError(f"cannot load masked LM from '{name}': {first_line(err)}") from None
    new_head = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(model.base_model_prefix + "."))
    return model.to(device), new_head


def check_masked_lm(name: str, trust_remote_code: bool = False) -> None:
    """Fail before any training if ``name`` is not a masked LM (reads only its config)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

    config = load_model_config(name, trust_remote_code, hint="; point model at a masked LM folder or Hub id")
    if getattr(config, "auto_map", None) and trust_remote_code:
        return  # custom code: let AutoModelForMaskedLM decide
    if type(config) not in MODEL_FOR_MASKED_LM_MAPPING:
        raise PetError(
            f"'{name}' is not a masked language model (model type {config.model_type}); "
            f"PET teachers need one, such as BERT or RoBERTa"
        )


def check_classifier_labels(name: str, labels: list[str], trust_remote_code: bool = False, key: str = "distillation.model") -> None:
    """A classifier started from the checkpoint the setting ``key`` names (the student's, or the supervised
    member's) must classify into the run's labels; every error names ``key``.

    A checkpoint whose config names other labels (not the default LABEL_0, LABEL_1, ...) would have its
    trained head silently reused for other classes, or dropped; neither is what a user means.
    """
    try:
        config = load_model_config(name, trust_remote_code)
    except PetError as err:
        raise PetError(f"{key}: {err}") from None
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    theirs = [id2label[i] for i in sorted(id2label)]
    if not theirs or all(label == f"LABEL_{i}" for i, label in enumerate(theirs)):
        return  # not a trained classifier: the head is new
    if theirs != list(labels):
        raise PetError(
            f"{key} '{name}' is a classifier for labels [{', '.join(theirs)}], but the teachers' labels are "
            f"[{', '.join(labels)}]; set {key} to a base checkpoint (or one trained for these labels, in this order)"
        )


def load_classifier(name: str, labels: list[str], device: torch.device, trust_remote_code: bool = False,
                    multi_label: bool = False):
    """A sequence classifier with this run's label names, so the saved folder is self-describing.

    ``multi_label``: problem_type "multi_label_classification", so that transformers' own pipeline
    (``pipeline("text-classification", model=folder, top_k=None)``) applies a sigmoid per label.
    """
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    check_model_path(name)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name,
            dtype=torch.float32,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True,
            trust_remote_code=trust_remote_code,
        )
    except Exception as err:
        raise PetError(f"cannot load a sequence classifier from '{name}': {first_line(err)}") from None
    model.config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    return model.to(device)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def save_model(model, folder: Path) -> None:
    """``save_pretrained`` on whatever rank trained the model.

    With torch.distributed initialised, transformers writes only on rank 0, since it assumes the ranks
    hold one shared (replicated or sharded) model. pet's ranks train whole teachers of their own, so each
    must save its own; the override is this one model's, for this one call.
    """
    model.should_save_on_this_rank = lambda is_main_process: is_main_process
    try:
        model.save_pretrained(folder)
    finally:
        del model.should_save_on_this_rank


# The PET paper's 1e-5 was tuned for RoBERTa-large (355M parameters). Smaller models need larger
# steps to move in a few hundred updates: with 1e-5 for 100 steps, a 22M-parameter MiniLM's teachers
# barely left their starting point on a six-class task (issue 10: lr 5e-5 took its student from 37.0
# to 70.6). These are the usual fine-tuning rates for each size class, fixed a priori.
AUTO_LEARNING_RATES = ((200e6, 1e-5), (60e6, 2e-5), (0, 5e-5))  # (from this many parameters, learning rate)


def auto_learning_rate(model: torch.nn.Module) -> float:
    """The learning rate ``auto`` stands for: by the model's parameter count (AUTO_LEARNING_RATES)."""
    count = sum(p.numel() for p in model.parameters())
    return next(rate for threshold, rate in AUTO_LEARNING_RATES if count >= threshold)


def resolved_learning_rate(setting: float | str, model: torch.nn.Module) -> float:
    if setting in ("cv", "search"):  # the stage replaces it with the searched rate before anything trains
        raise ValueError(f"learning_rate {setting} must be resolved by the learning-rate search first")
    return auto_learning_rate(model) if setting == "auto" else float(setting)
