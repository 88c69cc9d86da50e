"""iPET: generation sizes, label distribution, other-teachers-only labelling, files, resume, zero-shot iPET."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import skewed_project, write_project
from typer.testing import CliRunner

from pet.cli import app


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_split_counts_and_sizes():
    from pet.stages.teachers.ipet import generation_size, split_counts

    assert split_counts(8, [6.0, 2.0]) == [6, 2]
    assert split_counts(10, [1.0, 1.0, 1.0]) == [4, 3, 3]
    assert sum(split_counts(37, [5.0, 3.0, 1.0])) == 37
    assert [generation_size(10, j, 5.0, 10) for j in (1, 2, 3)] == [50, 250, 1250]  # |T| * d^j
    assert [generation_size(0, j, 5.0, 10) for j in (1, 2, 3)] == [10, 50, 250]  # zero-shot: 10 * d^(j-1)


def test_a_label_never_predicted_keeps_a_share_of_the_added_examples():
    from pet.stages.teachers.ipet import predicted_shares, split_counts

    assert predicted_shares([600, 390, 10, 0]) == [600.0, 390.0, 10.0, 1.0]
    assert split_counts(1001, predicted_shares([600, 390, 10, 0])) == [600, 390, 10, 1]
    assert predicted_shares([3, 1]) == [3.0, 1.0]  # counts above zero are kept as they are


def test_auto_generations_follow_the_papers_rule():
    """ipet.generations auto: the smallest k >= 1 with |T| * d^k >= 1000 (zero-shot: 10 * d^(k-1) >= 1000)."""
    from pet.io.config import IpetConfig

    auto = IpetConfig(generations="auto")  # d = 5
    assert [auto.count(n) for n in (1, 8, 10, 32, 40, 41, 200, 999, 5000)] == [5, 3, 3, 3, 2, 2, 1, 1, 1]
    assert auto.count(0) == auto.count(32, zero_shot=True) == 4  # 10 * 5^3 = 1250
    assert IpetConfig(generations="auto", growth=2.0).count(8) == 7  # 8 * 2^7 = 1024
    assert IpetConfig(generations=2).count(1000) == 2 and IpetConfig().count(10) == 0
    assert auto.enabled and IpetConfig(generations=1).enabled and not IpetConfig().enabled


def test_auto_generations_run_and_are_recorded(tmp_path, tiny_bert, monkeypatch):
    import pet.io.config
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    monkeypatch.setattr(pet.io.config, "TARGET_IPET_EXAMPLES", 32)  # 8 labelled x 2^2: two generations, cheaply
    config = load_config(skewed_project(tmp_path, tiny_bert), {**IPET, "ipet.generations": "auto"})
    manifest = train_teachers(config, tmp_path / "teachers")
    assert manifest["ipet"]["final_generation"] == 2 and manifest["ipet"]["settings"]["generations"] == "auto"
    assert [g["training_examples"] for g in manifest["ipet"]["generations"]] == [8, 16, 32]
    assert all(e["path"].startswith("g2/") for e in manifest["teachers"])
    result = CliRunner().invoke(app, ["train-teachers", str(tmp_path / "config.yaml"), "-o", str(tmp_path / "t"),
                                      "--ipet.generations", "many"])
    assert result.exit_code == 1 and "'ipet.generations'" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unset_generations_mean_ipet_for_trained_single_label_teachers():
    """pet's default: iPET (auto) for trained single-label teachers; plain PET for zero-shot and
    multi-label ones; a value set is kept. The config keeps "unset", so a copy that turns zero-shot on
    does not inherit an auto decided for trained teachers."""
    from pet.io.config import RunConfig

    base = {"model": "m", "data": {"train": "t.jsonl", "unlabeled": "u.jsonl"}, "patterns": {"file": "p.yaml"},
            "verbalizers": {"file": "v.yaml"}}
    config = RunConfig(**base)
    assert config.ipet.generations is None and config.to_json()["ipet"]["generations"] is None
    assert config.effective_ipet.generations == "auto" and config.effective_ipet.enabled
    assert config.effective_ipet.model_dump(exclude={"generations"}) == config.ipet.model_dump(exclude={"generations"})
    zero_shot = config.model_copy(update={"teachers": config.teachers.model_copy(update={"zero_shot": True})})
    assert zero_shot.effective_ipet.generations == 0 and not zero_shot.effective_ipet.enabled
    assert RunConfig(**base, task={"type": "multi_label"}).effective_ipet.generations == 0
    assert RunConfig(**base, ipet={"generations": 0}).effective_ipet.generations == 0
    assert RunConfig(**base, ipet={"generations": 2}, teachers={"zero_shot": True}).effective_ipet.generations == 2


def test_the_default_run_is_ipet(tmp_path, tiny_bert, monkeypatch):
    """A config without an ipet section trains iPET generations, labels from the last one and distils;
    with a single teacher per generation the default is plain PET, said in one line that names the way to iPET."""
    import pet.io.config

    monkeypatch.setattr(pet.io.config, "TARGET_IPET_EXAMPLES", 16)  # 8 labelled x 5: one generation after the first
    config = write_project(tmp_path, tiny_bert)
    config.write_text(config.read_text().replace("ipet:\n  generations: 0\n", "").replace("seeds: [1]", "seeds: [1, 2]"))
    assert "ipet" not in config.read_text()
    plain = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "run" / "teachers"),
                                     "--teachers.steps", "2", "--ipet.generations", "0"])
    assert plain.exit_code == 0, plain.output
    # teachers of a run made before iPET was the default are out of date for the default ...
    refused = CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run"), "--teachers.steps", "2"])
    assert refused.exit_code == 1 and "ipet.generations" in refused.output, refused.output
    # ... and kept as they are with plain PET asked for
    kept = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "run" / "teachers"),
                                    "--teachers.steps", "2", "--ipet.generations", "0"])
    assert kept.exit_code == 0 and "all teachers already trained" in kept.output, kept.output
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run"), "--teachers.steps", "2", "--overwrite"])
    assert result.exit_code == 0, result.output
    teachers = json.loads((tmp_path / "run" / "teachers" / "manifest.json").read_text())
    assert teachers["ipet"]["settings"]["generations"] == "auto" and teachers["ipet"]["final_generation"] == 1
    assert teachers["config"]["ipet"]["generations"] is None  # what the user wrote: unset
    assert [g["training_examples"] for g in teachers["ipet"]["generations"]] == [8, 40]
    assert all(e["path"].startswith("g1/") for e in teachers["teachers"]) and len(teachers["teachers"]) == 4
    assert (tmp_path / "run" / "student" / "manifest.json").exists()

    # one teacher per generation (a new user's one pattern x one verbalizer x one seed): the default is
    # plain PET, said in one line; iPET asked for is refused, in one line, before anything is written
    one = ["train-teachers", str(config), "-o", str(tmp_path / "one"), "--patterns.ids", "[it-was]", "--teachers.seeds", "[1]",
           "--teachers.steps", "2"]
    asked = CliRunner().invoke(app, [*one, "--ipet.generations", "auto"])
    assert asked.exit_code == 1 and len(asked.output.strip().splitlines()) == 1, asked.output
    assert "iPET needs at least two teachers per generation" in asked.output and "set ipet.generations: 0 for plain PET" in asked.output
    assert not (tmp_path / "one").exists()
    single = CliRunner().invoke(app, one)
    assert single.exit_code == 0, single.output
    assert ("plain PET: iPET needs at least two teachers per generation, since each is taught by the others, and this run "
            "has 1 (1 pattern x verbalizer pair x 1 seed); for iPET, pet's default, add a pattern") in " ".join(single.output.split())
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert "ipet" not in manifest and manifest["config"]["ipet"]["generations"] == 0
    assert [e["path"] for e in manifest["teachers"]] == ["it-was--bad-good--s1"]
    # the same teachers as plain PET asked for: kept, not retrained
    plain = CliRunner().invoke(app, [*one, "--ipet.generations", "0"])
    assert plain.exit_code == 0 and "all teachers already trained" in plain.output, plain.output


IPET = {"ipet.generations": 2, "ipet.growth": 2, "ipet.teacher_fraction": 0.5, "teachers.seeds": [1, 2], "teachers.steps": 2}


@pytest.fixture(scope="module")
def ipet_run(tmp_path_factory, tiny_bert):
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    folder = tmp_path_factory.mktemp("ipet")
    config = load_config(skewed_project(folder, tiny_bert), IPET)
    manifest = train_teachers(config, folder / "teachers")
    return folder, manifest


def test_generation_sizes_and_files(ipet_run):
    folder, manifest = ipet_run
    generations = manifest["ipet"]["generations"]
    assert [g["generation"] for g in generations] == [0, 1, 2]
    assert [g["training_examples"] for g in generations] == [8, 16, 32]  # |T| * d^j with d = 2
    assert [len(g["teachers"]) for g in generations] == [4, 4, 4]
    assert manifest["teachers"] == generations[2]["teachers"]  # the final generation feeds stage B
    assert all(e["path"].startswith("g2/") for e in manifest["teachers"])
    for generation in generations[1:]:
        for entry in generation["teachers"]:
            rows = read_jsonl(folder / "teachers" / entry["training_set"])
            assert len(rows) == generation["training_examples"]
            original, added = rows[:8], rows[8:]
            assert [r["id"] for r in original] == [f"t{i}" for i in range(8)]
            assert all(r["source"] == "labelled" and r["probability"] is None for r in original)
            assert all(r["source"] == "ipet" and 0 < r["probability"] <= 1 for r in added)
            assert set(rows[0]) == {"id", "text", "label", "source", "probability"}
            # The label distribution of the labelled set (6:2) is kept.
            positive = sum(r["label"] == "positive" for r in added)
            assert (positive, len(added) - positive) == (6 * len(added) // 8, 2 * len(added) // 8)
    assert not list((folder / "teachers").rglob("*.bin")) and not list((folder / "teachers").rglob("*.pkl"))


def generation_zero_counts(teachers, manifest):
    """How often each label is the top class of generation 0's whole ensemble on the unlabeled set, recomputed here:
    wmean, or the plain mean where the teachers have no weights (zero-shot) or all weigh 0."""
    from safetensors.torch import load_file

    from pet.core import maths

    first = manifest["ipet"]["generations"][0]["teachers"]
    logits = torch.stack([load_file(str(teachers / e["path"] / "unlabeled_logits.safetensors"))["logits"] for e in first])
    weighted = all(e["weight"] is not None for e in first) and sum(e["weight"] for e in first) > 0
    weights = torch.tensor([e["weight"] for e in first]) if weighted else None
    predicted = maths.ensemble_logits(logits, weights).argmax(-1)
    return torch.bincount(predicted, minlength=2).tolist()


def test_auto_label_distribution_is_decided_on_generation_zero_and_recorded(ipet_run):
    """Auto keeps T's 6:2 (checked above) unless generation 0's ensemble predicts some label under half its even
    share; a label it never predicts has no weight (the class_weights rule), so this pool counts as even."""
    folder, manifest = ipet_run
    counts = generation_zero_counts(folder / "teachers", manifest)
    seen = [c for c in counts if c]
    largest = sum(seen) / (len(seen) * min(seen))
    assert largest <= 2.0, "the fixture's pool is meant to be even enough for auto to keep T's distribution"
    assert manifest["ipet"]["label_distribution"] == {
        "setting": "auto", "used": "labelled", "predicted_label_counts": {"negative": counts[0], "positive": counts[1]},
        "largest_weight": round(largest, 4), "auto_threshold": 2.0}
    assert manifest["ipet"]["settings"]["label_distribution"] == "auto"


def test_choose_label_distribution_shares_the_class_weights_rule():
    from pet.stages.teachers.ipet import choose_label_distribution

    even = choose_label_distribution("auto", {"a": 2, "b": 1})  # largest weight 3 / (2 x 1) = 1.5
    assert (even.used, even.largest_weight) == ("labelled", 1.5)
    assert even.describe() == "labelled (auto: largest class weight 1.50 <= 2)"
    edge = choose_label_distribution("auto", {"a": 3, "b": 1})  # exactly 2: still even enough
    assert edge.used == "labelled" and edge.largest_weight == 2.0
    skewed = choose_label_distribution("auto", {"a": 30, "b": 10, "c": 2, "d": 0})  # 42 / (3 x 2) = 7; d never on top
    assert skewed.used == "predicted" and skewed.largest_weight == 7.0
    assert skewed.describe() == "predicted (auto: largest class weight 7.00 > 2)"
    assert skewed.record() == {"setting": "auto", "used": "predicted", "predicted_label_counts": {"a": 30, "b": 10, "c": 2, "d": 0},
                               "largest_weight": 7.0, "auto_threshold": 2.0}
    forced = choose_label_distribution("labelled", {"a": 30, "b": 1})
    assert forced.used == "labelled" and forced.describe() == "labelled" and "auto_threshold" not in forced.record()
    assert choose_label_distribution("predicted", {"a": 1, "b": 1}).used == "predicted"


def test_predicted_label_distribution_follows_generation_zero(tmp_path, tiny_bert):
    """With predicted, every teacher's added examples are split over the labels in proportion to how often generation
    0's whole ensemble predicts each on the unlabeled set (largest remainder), in every generation, not T's 6:2."""
    from pet.io.config import load_config
    from pet.stages.teachers.ipet import predicted_shares, split_counts
    from pet.stages.teachers.stage import train_teachers

    config = load_config(skewed_project(tmp_path, tiny_bert), {**IPET, "ipet.growth": 3, "ipet.label_distribution": "predicted"})
    manifest = train_teachers(config, tmp_path / "teachers")
    counts = generation_zero_counts(tmp_path / "teachers", manifest)
    recorded = manifest["ipet"]["label_distribution"]
    assert (recorded["setting"], recorded["used"]) == ("predicted", "predicted") and "auto_threshold" not in recorded
    assert recorded["predicted_label_counts"] == {"negative": counts[0], "positive": counts[1]}
    for generation, added_total in ((1, 8 * 3 - 8), (2, 8 * 9 - 8)):
        expected = split_counts(added_total, predicted_shares(counts))
        assert expected != split_counts(added_total, [2.0, 6.0])  # what keeping T's distribution would give
        for entry in manifest["ipet"]["generations"][generation]["teachers"]:
            added = read_jsonl(tmp_path / "teachers" / entry["training_set"])[8:]
            assert [sum(r["label"] == label for r in added) for label in ("negative", "positive")] == expected
            record = json.loads((tmp_path / "teachers" / entry["path"] / "teacher.json").read_text())
            assert record["added_per_label"] == {"negative": expected[0], "positive": expected[1]}


def test_labelled_by_other_teachers_of_the_previous_generation_only(ipet_run):
    folder, manifest = ipet_run
    generations = manifest["ipet"]["generations"]
    for previous, current in zip(generations, generations[1:]):
        names = {e["name"] for e in previous["teachers"]}
        for entry in current["teachers"]:
            record = json.loads((folder / "teachers" / entry["path"] / "teacher.json").read_text())
            assert record["generation"] == current["generation"]
            assert len(record["labelled_by"]) == 2  # round(0.5 * 3 others)
            assert entry["name"] not in record["labelled_by"]
            assert set(record["labelled_by"]) <= names
    seeds = [e["derived_seed"] for g in generations for e in g["teachers"]]
    assert len(set(seeds)) == len(seeds)  # a generation's seed differs from the same teacher's earlier one


def test_added_examples_follow_the_ensemble_of_the_chosen_teachers(ipet_run):
    """Each added example carries the label the chosen teachers' ensemble predicts, with its probability."""
    from safetensors.torch import load_file

    from pet.core import maths

    folder, manifest = ipet_run
    generation = manifest["ipet"]["generations"][1]
    previous = {e["name"]: e for e in manifest["ipet"]["generations"][0]["teachers"]}
    unlabeled = {r["id"]: i for i, r in enumerate(read_jsonl(folder / "unlabeled.jsonl"))}
    for entry in generation["teachers"]:
        record = json.loads((folder / "teachers" / entry["path"] / "teacher.json").read_text())
        chosen = [previous[name] for name in record["labelled_by"]]
        logits = torch.stack([load_file(str(folder / "teachers" / e["path"] / "unlabeled_logits.safetensors"))["logits"] for e in chosen])
        weights = torch.tensor([e["weight"] for e in chosen])
        probs = torch.softmax(maths.ensemble_logits(logits, weights if weights.sum() > 0 else None), -1)
        predicted = probs.argmax(-1)
        for row in read_jsonl(folder / "teachers" / entry["training_set"])[8:]:
            label = ["negative", "positive"].index(row["label"])
            p = probs[unlabeled[row["id"]]]
            if (predicted == label).any():
                assert int(p.argmax()) == label
            else:  # the (random) ensemble never predicts this label: the most likely examples stand in
                assert unlabeled[row["id"]] in torch.argsort(probs[:, label], descending=True)[:100].tolist()
            assert row["probability"] == pytest.approx(float(p[label]), rel=1e-5)


def test_ipet_is_deterministic_and_resumes(ipet_run, tmp_path, tiny_bert):
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    folder, manifest = ipet_run
    config = load_config(skewed_project(tmp_path, tiny_bert), IPET)
    out = tmp_path / "teachers"
    train_teachers(config, out)
    # Interrupt: lose the manifest, one generation-1 teacher with its set, and all of generation 2.
    victim = manifest["ipet"]["generations"][1]["teachers"][1]
    (out / "manifest.json").unlink()
    shutil.rmtree(out / victim["path"])
    (out / victim["training_set"]).unlink()
    shutil.rmtree(out / "g2")
    again = train_teachers(config, out)
    for generation in (1, 2):
        for entry in manifest["ipet"]["generations"][generation]["teachers"]:
            assert (out / entry["training_set"]).read_text() == (folder / "teachers" / entry["training_set"]).read_text()
    losses = lambda m: [e["metrics"]["loss_last"] for e in m["teachers"]]
    assert losses(again) == losses(manifest)


def test_label_and_evaluate_use_the_final_generation(ipet_run, tmp_path):
    folder, manifest = ipet_run
    result = CliRunner().invoke(app, ["label", str(folder / "teachers"), "-o", str(tmp_path / "labels")])
    assert result.exit_code == 0, result.output
    labels = json.loads((tmp_path / "labels" / "manifest.json").read_text())
    assert labels["teachers"] == [e["name"] for e in manifest["teachers"]]
    evaluated = CliRunner().invoke(app, ["evaluate", str(folder / "teachers"), "--data", str(folder / "test.jsonl"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert len(json.loads(evaluated.stdout)["teachers"]) == 4


def run_zero_shot_ipet(tmp_path, tiny_bert, command, *options):
    """One generation of zero-shot iPET (the project without its labelled file, seed 1) through ``pet COMMAND``."""
    config = write_project(tmp_path, tiny_bert)
    config.write_text(config.read_text().replace("  train: train.jsonl\n", ""))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [command, str(config), "-o", str(run), "--teachers.zero_shot", "true",
                                      "--ipet.generations", "1", "--teachers.seeds", "[1]", *options])
    assert result.exit_code == 0, result.output
    return run


def test_zero_shot_ipet_end_to_end(tmp_path, tiny_bert):
    run = run_zero_shot_ipet(tmp_path, tiny_bert, "run", "--ipet.zero_shot_examples", "4", "--ipet.zero_shot_candidates", "5")
    manifest = json.loads((run / "teachers" / "manifest.json").read_text())
    first, second = manifest["ipet"]["generations"]
    assert [e["name"] for e in first["teachers"]] == ["it-was--bad-good--zero-shot", "just--bad-good--zero-shot"]
    assert [e["name"] for e in second["teachers"]] == ["it-was--bad-good--s1", "just--bad-good--s1"]
    assert manifest["teachers"] == second["teachers"] and all(e["weight"] is None for e in second["teachers"])
    from safetensors.torch import load_file

    unlabeled = [r["id"] for r in read_jsonl(tmp_path / "unlabeled.jsonl")]
    for entry in second["teachers"]:
        rows = read_jsonl(run / "teachers" / entry["training_set"])
        assert len(rows) == 4 and sorted(r["label"] for r in rows) == ["negative", "negative", "positive", "positive"]
        assert all(r["source"] == "ipet" for r in rows)
        # Labelled by the other pattern's zero-shot teacher, from its 5 most confident examples per label.
        other = next(e for e in first["teachers"] if e["pattern"] != entry["pattern"])
        probs = torch.softmax(load_file(str(run / "teachers" / other["path"] / "unlabeled_logits.safetensors"))["logits"], -1)
        for row in rows:
            label = ["negative", "positive"].index(row["label"])
            top = torch.argsort(probs[:, label], descending=True, stable=True)[:5].tolist()
            assert unlabeled.index(row["id"]) in top
            assert row["probability"] == pytest.approx(float(probs[unlabeled.index(row["id"]), label]), rel=1e-5)
    assert json.loads((run / "labels" / "manifest.json").read_text())["ensemble"] == "mean"


def test_zero_shot_ipet_with_predicted_distribution_splits_by_the_zero_shot_ensemble(tmp_path, tiny_bert):
    """Without labelled examples, ``predicted`` splits generation 1's set by the classes the zero-shot (mean)
    ensemble puts on top of the unlabeled set, not evenly."""
    from pet.stages.teachers.ipet import predicted_shares, split_counts

    run = run_zero_shot_ipet(tmp_path, tiny_bert, "train-teachers", "--ipet.zero_shot_examples", "9",
                             "--ipet.label_distribution", "predicted")
    manifest = json.loads((run / "manifest.json").read_text())
    second = manifest["ipet"]["generations"][1]
    assert all(e["weight"] is None for e in manifest["ipet"]["generations"][0]["teachers"])  # zero-shot: the mean
    counts = generation_zero_counts(run, manifest)
    recorded = manifest["ipet"]["label_distribution"]
    assert recorded["used"] == "predicted" and recorded["predicted_label_counts"] == {"negative": counts[0], "positive": counts[1]}
    expected = split_counts(9, predicted_shares(counts))
    assert expected != split_counts(9, [1.0, 1.0])  # what the even split of zero-shot iPET would give
    for entry in second["teachers"]:
        rows = read_jsonl(run / entry["training_set"])
        assert [sum(r["label"] == label for r in rows) for label in ("negative", "positive")] == expected


def test_ipet_needs_two_teachers(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "t"), "--ipet.generations", "1",
                                      "--patterns.ids", "[just]"])
    assert result.exit_code == 1 and "at least two teachers" in result.output


def test_raising_the_generations_trains_only_the_new_one(ipet_run, tmp_path, tiny_bert):
    """A run with one generation, given a second: generations 0 and 1 are kept (generation 1, its last,
    is scored on the unlabeled set once), and the result is what two generations from the start give."""
    from pet.errors import PetError
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    folder, manifest = ipet_run  # two generations
    config = skewed_project(tmp_path, tiny_bert)
    out = tmp_path / "teachers"
    one = train_teachers(load_config(config, {**IPET, "ipet.generations": 1}), out)
    assert not any((out / e["path"] / "unlabeled_logits.safetensors").exists() for e in one["teachers"])  # a last generation
    records = {path: path.read_bytes() for path in out.rglob("teacher.json")}
    assert len(records) == 8
    with pytest.raises(PetError, match=r"ipet\.generations 1 -> 2"):
        train_teachers(load_config(config, IPET), out)
    two = train_teachers(load_config(config, IPET), out, overwrite=True)
    assert all(path.read_bytes() == content for path, content in records.items())  # nothing retrained
    assert all((out / e["path"] / "unlabeled_logits.safetensors").exists() for e in one["teachers"])
    for entry in manifest["ipet"]["generations"][2]["teachers"]:
        assert (out / entry["training_set"]).read_text() == (folder / "teachers" / entry["training_set"]).read_text()
    losses = lambda m: [e["metrics"]["loss_last"] for e in m["teachers"]]
    assert losses(two) == losses(manifest)


def test_evaluate_measures_any_generation(ipet_run, tmp_path):
    """pet evaluate --generation G: generation G's teachers and their ensemble; the last by default."""
    import pet

    folder, manifest = ipet_run
    teachers, test = folder / "teachers", folder / "test.jsonl"
    evaluate = lambda *extra: CliRunner().invoke(app, ["evaluate", str(teachers), "--data", str(test), "--json", *extra])
    results = [json.loads(evaluate("--generation", str(g)).stdout) for g in (0, 1, 2)]
    default = json.loads(evaluate().stdout)
    assert [r["generation"] for r in results] == [0, 1, 2] and "generation" not in default
    assert results[2]["teachers"] == default["teachers"] and results[2]["ensemble"] == default["ensemble"]
    names = list(default["teachers"])
    assert all(list(r["teachers"]) == names for r in results)  # the same identities, other models
    assert results[0]["teachers"][names[0]]["nll"] != results[2]["teachers"][names[0]]["nll"]
    api = pet.Teachers.load(teachers).evaluate(test, generation=0)
    assert api["teachers"] == results[0]["teachers"] and api["ensemble"]["accuracy"] == results[0]["ensemble"]["accuracy"]
    for extra, fragment in ((["--generation", "3"], "no generation 3; this iPET run has generations 0 to 2"),
                            (["--generation", "-1"], "no generation -1")):
        result = evaluate(*extra)
        assert result.exit_code == 1 and fragment in result.output and len(result.output.strip().splitlines()) == 1


def test_evaluate_generation_needs_an_ipet_teachers_folder(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    run = CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    for folder, fragment in ((tmp_path / "run" / "teachers", "this is a plain PET teachers folder"),
                             (tmp_path / "run" / "student", "this is a student folder"),
                             (config, "--generation needs an iPET teachers folder")):
        result = CliRunner().invoke(app, ["evaluate", str(folder), "--data", str(tmp_path / "test.jsonl"), "--generation", "0"])
        assert result.exit_code == 1 and fragment in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
