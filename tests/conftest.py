"""Shared fixtures: tiny random BERT (WordPiece) and RoBERTa (byte-level BPE) masked LMs built offline.

As in transformers' own tests, the models are tiny (hidden 32, 2 layers) and are written to a temp
folder and loaded back by path, so the real loading code runs. Everything is session-scoped.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports transformers
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["PET_NO_PROGRESS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import json
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_MODEL = SHARED / "models" / "minilm-l6-mlm"
SHARED_DATA = SHARED / "data"

# Words the tiny models know: enough for the sentiment and NLI fixtures and the shipped verbalizers.
WORDS = """
the a an it was is this that and or but not no yes very really so too of to in on for with at
movie film book food hotel story plot acting service room place music ending
great good excellent wonderful awesome fine love loved best fun terrible bad awful boring poor worst
hate hated dull all summary just right wrong maybe question answer true based previous passage
man woman dog cat sleeps runs eats park house city world sports business tech news category
""".split()
PUNCT = list(".,!?()\"':-[]")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_bert(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials + PUNCT + WORDS + ["##s", "##ed", "##ing", "##ly"])}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 128
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_roberta(folder: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    corpus = [" ".join(WORDS), " ".join(PUNCT)] + [f"{w}. {w}, ({w}) {w}!" for w in WORDS]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus * 5, vocab_size=600, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    vocab = bpe.get_vocab()
    merges_path = folder / "bpe"
    merges_path.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(merges_path))
    merges = [tuple(line.split()) for line in (merges_path / "merges.txt").read_text().splitlines() if line and not line.startswith("#")]
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 128
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=130, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    torch.manual_seed(seed)
    RobertaForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    return build_roberta(tmp_path_factory.mktemp("tiny-roberta"))


POSITIVE = ["a great movie", "really good food", "excellent service and a wonderful room", "loved the story",
            "the best film", "fun and awesome music", "good acting", "a wonderful book", "great place", "loved it"]
NEGATIVE = ["a terrible movie", "really bad food", "awful service and a poor room", "hated the story",
            "the worst film", "dull and boring music", "bad acting", "a boring book", "terrible place", "hated it"]


def sentiment_rows(prefix: str, count: int, labelled: bool = True) -> list[dict]:
    rows = []
    for i in range(count):
        positive = i % 2 == 0
        text = (POSITIVE if positive else NEGATIVE)[(i // 2) % 10]
        row = {"id": f"{prefix}-{i}", "text": text}
        if labelled:
            row["label"] = "positive" if positive else "negative"
        rows.append(row)
    return rows


def write_project(folder: Path, model: Path, *, train: int = 8, unlabeled: int = 24, test: int = 12,
                  extra: str = "") -> Path:
    """A complete sentiment run config with data, patterns and verbalizers; returns the config path.

    Plain PET (ipet.generations: 0) unless ``extra`` has an ipet section: pet's own default is iPET for
    trained teachers, which would multiply stage A in every test that is not about iPET. No adaptation
    (adapt.enabled: false) unless ``extra`` has an adapt section: under pet's default (auto) the tiny
    models' untrained heads would have pet run adapt them for 1,000 steps in every test."""
    write_jsonl(folder / "train.jsonl", sentiment_rows("train", train))
    write_jsonl(folder / "unlabeled.jsonl", sentiment_rows("u", unlabeled, labelled=False))
    write_jsonl(folder / "test.jsonl", sentiment_rows("test", test))
    (folder / "patterns.yaml").write_text(
        "patterns:\n"
        "  - id: it-was\n    template: \"{text} It was {mask}.\"\n    shorten: [text]\n"
        "  - id: just\n    template: \"Just {mask}! {text}\"\n",
        encoding="utf-8",
    )
    (folder / "verbalizers.yaml").write_text(
        "labels: [negative, positive]\n"
        "verbalizers:\n  - id: bad-good\n    words: {negative: [bad], positive: [good]}\n",
        encoding="utf-8",
    )
    config = folder / "config.yaml"
    config.write_text(
        f"model: {model}\n"
        "data:\n  train: train.jsonl\n  unlabeled: unlabeled.jsonl\n  test: test.jsonl\n"
        "patterns:\n  file: patterns.yaml\n"
        "verbalizers:\n  file: verbalizers.yaml\n"
        "teachers:\n  seeds: [1]\n  steps: 3\n  batch_size: 4\n  max_length: 64\n"
        "labelling:\n  batch_size: 8\n  max_length: 64\n"
        "distillation:\n  steps: 3\n  batch_size: 4\n  max_length: 64\n"
        "runtime:\n  device: cpu\n" + ("" if "ipet:" in extra else "ipet:\n  generations: 0\n")
        + ("" if "adapt:" in extra else "adapt:\n  enabled: false\n") + extra,
        encoding="utf-8",
    )
    return config


def skewed_project(folder: Path, model: Path) -> Path:
    """write_project with 6 positive and 2 negative labelled examples, so that keeping the label
    distribution (iPET's added examples) is visible; two cv folds get 3 + 1 each."""
    config = write_project(folder, model)
    texts = ["a great movie", "really good food", "loved the story", "the best film", "good acting", "loved it"]
    rows = [{"id": f"t{i}", "text": t, "label": "positive"} for i, t in enumerate(texts)]
    rows += [{"id": "t6", "text": "a terrible movie", "label": "negative"}, {"id": "t7", "text": "hated it", "label": "negative"}]
    write_jsonl(folder / "train.jsonl", rows)
    return config


class ProgressRecorder:
    """Stands in for pet.core.progress.progress (which the suite silences): each bar's description,
    total and the sum of its advances, to check that a long step reports all of its work."""

    def __init__(self):
        self.bars: list[dict] = []

    @contextmanager
    def __call__(self, description: str, total: int, interval: float = 30.0):
        bar = {"description": description, "total": total, "done": 0}
        self.bars.append(bar)

        def advance(n: int = 1) -> None:
            bar["done"] += n

        yield advance


@pytest.fixture
def recorded_progress() -> ProgressRecorder:
    return ProgressRecorder()


@pytest.fixture
def project(tmp_path, tiny_bert) -> Path:
    """A small, valid run config on the tiny BERT model, in a fresh temp folder."""
    return write_project(tmp_path, tiny_bert)


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one worker per core, at most four.

    The suite's long tests are subprocess runs and real-model training, each worth a core; past
    four workers the files are too few to keep more busy, and every worker pays torch's import.
    """
    return min(cores(), 4)


def pytest_collection_modifyitems(items) -> None:
    """The `long` tests first (a stable sort: otherwise in file order). With `--dist loadfile` a file
    goes to a worker in the order of its first test, so the long files start at once and the many
    short ones fill the workers in around them, instead of one long file starting last."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cores_per_worker() -> int:
    """The cores a test may use for its own threads without oversubscribing its neighbours'."""
    return max(1, cores() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Run in-process torch work on one thread.

    The tiny models gain nothing from intra-op threads, and on a busy 2-core machine the thread
    pool's spin-waiting made CPU-bound tests 10-20x slower. A test that needs more threads (the
    real-model run) raises the count itself and restores it.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


HOLD = """
import sys, time
from pathlib import Path
from pet.io.lock import writing
with writing(Path(sys.argv[1]), sys.argv[2], beside=sys.argv[3] == "beside"):
    print("held", flush=True)
    time.sleep(600)
"""


@contextmanager
def held_by_another_process(folder: Path, command: str = "pet label", *, beside: bool = False):
    """A second Python process holding ``folder``'s lock until the block ends (then killed with SIGKILL)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), command, "beside" if beside else "inside"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel alone releases the lock
        holder.wait(timeout=30)
