"""experiments.toml loading: resolution, sweeps, and the exact text of every error."""

from __future__ import annotations

import textwrap

import pytest

from labreport.config.loader import ConfigError, load, loads
from labreport.config.spec import OPTIMIZERS

BASE = """
[[experiment]]
name = "raw-1"
part = "raw"
hidden = 250
activation = "tanh"
dropout = 0.5
batch_size = 4096
epochs = 150
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(textwrap.dedent(text))
    return info.value.errors


def test_default_file_declares_the_24_experiments_of_the_lab():
    config = load("experiments.toml")
    by_part: dict[str, list[str]] = {}
    for spec in config.experiments:
        by_part.setdefault(spec.part, []).append(spec.name)
    assert {p: len(v) for p, v in by_part.items()} == {"raw": 6, "hog": 8, "cnn": 6, "fashion": 4}
    chosen = {s.part: s.name for s in config.experiments if s.chosen}
    assert chosen == {"raw": "raw-tanh-250", "hog": "hog-sigmoid-p4-o8", "cnn": "cnn-relu-5",
                      "fashion": "fashion-conv9-100"}
    raw = config.by_name("raw-tanh-250")
    assert (raw.hidden, raw.activation, raw.dropout, raw.batch_size, raw.epochs) == ((250,), "tanh", 0.5, 4096, 150)
    assert raw.optimizer.name == "rmsprop"
    assert raw.optimizer.as_dict() == OPTIMIZERS["rmsprop"]
    hog = config.by_name("hog-tanh-p7-o16")
    assert (hog.hog.pixels_per_cell, hog.hog.orientations, hog.hog.n_features) == (7, 16, 256)
    assert (hog.batch_size, hog.epochs, hog.activation) == (1024, 200, "tanh")
    fashion_tanh = config.by_name("fashion-tanh-25")
    assert {c.activation for c in fashion_tanh.conv} == {"tanh"}
    assert fashion_tanh.dataset == "fashion" and fashion_tanh.batch_size == 16382
    # sweep variants stand where their sweep is declared, after the experiment they vary
    names = [s.name for s in config.experiments]
    assert names.index("cnn-relu-10") > names.index("cnn-relu-25")
    assert names.index("cnn-sigmoid-25") < names.index("fashion-relu-25")


def test_defaults_then_from_then_own_keys():
    config = loads(textwrap.dedent("""
        [defaults]
        seed = 7
        optimizer = { learning_rate = 0.01 }
        [[experiment]]
        name = "a"
        part = "raw"
        hidden = [300, 100]
        activation = "relu"
        batch_size = 32
        epochs = 3
        chosen = true
        comment = "mine"
        [[experiment]]
        name = "b"
        from = "a"
        epochs = 5
        optimizer = { rho = 0.5 }
    """))
    a, b = config.experiments
    assert a.seed == b.seed == 7
    assert b.hidden == (300, 100) and b.epochs == 5
    assert b.optimizer.as_dict()["learning_rate"] == 0.01 and b.optimizer.as_dict()["rho"] == 0.5
    assert not b.chosen and b.comment == ""  # never inherited


def test_changing_optimizer_name_drops_inherited_arguments():
    config = loads(BASE + """
[[experiment]]
name = "adam"
from = "raw-1"
optimizer = { name = "adam", beta_1 = 0.8 }
""")
    args = config.by_name("adam").optimizer.as_dict()
    assert config.by_name("adam").optimizer.name == "adam"
    assert args == {**OPTIMIZERS["adam"], "beta_1": 0.8}


def test_sweep_is_a_cartesian_product_with_templated_names():
    config = loads(BASE + """
[[sweep]]
from = "raw-1"
name = "raw-{activation}-{hidden}"
vary = { activation = ["relu", "sigmoid"], hidden = [10, 20, 30] }
comment = "grid"
""")
    names = [s.name for s in config.experiments]
    assert names == ["raw-1"] + [f"raw-{a}-{h}" for a in ("relu", "sigmoid") for h in (10, 20, 30)]
    swept = config.by_name("raw-sigmoid-20")
    assert swept.hidden == (20,) and swept.activation == "sigmoid" and swept.epochs == 150
    assert swept.comment == "grid"


def test_sweep_default_names_and_dotted_keys():
    config = loads("""
[[experiment]]
name = "h"
part = "hog"
hog = { pixels_per_cell = 4, orientations = 8 }
hidden = 10
activation = "relu"
batch_size = 8
epochs = 1

[[sweep]]
from = "h"
vary = { "hog.orientations" = [9, 16], "optimizer.learning_rate" = [0.01] }
""")
    assert [s.name for s in config.experiments] == ["h", "h-orientations9-learning_rate0.01",
                                                   "h-orientations16-learning_rate0.01"]
    assert config.by_name("h-orientations16-learning_rate0.01").hog.n_features == 7 * 7 * 16


def test_cache_key_ignores_name_comment_and_chosen_but_not_hyper_parameters():
    config = loads(BASE + """
[[experiment]]
name = "raw-2"
from = "raw-1"
comment = "same model, other words"
chosen = true

[[experiment]]
name = "raw-3"
from = "raw-1"
epochs = 151
""")
    a, b, c = config.experiments
    assert a.cache_key() == b.cache_key()
    assert a.cache_key() != c.cache_key()
    assert a.cache_key(data_sha256="x") != a.cache_key(data_sha256="y")
    assert a.cache_key(quick=True) != a.cache_key()


# ----------------------------------------------------------------------------- errors, golden
GOLDEN = [
    ("unknown key with suggestion", """
[[experiment]]
name = "hog-1"
part = "hog"
hog = { pixels_per_cell = 4, orientations = 8 }
hidden = 200
activation = "relu"
batch_size = 512
epoch = 10
""", [
        "experiments.toml:2: experiment 'hog-1': missing required key 'epochs'",
        "experiments.toml:9: experiment 'hog-1': unknown key 'epoch' (did you mean 'epochs'?)",
    ]),
    ("wrong types and ranges, all at once", """
[[experiment]]
name = "a"
part = "raw"
hidden = [0]
activation = "relux"
dropout = 1.0
batch_size = -5
epochs = "ten"
""", [
        "experiments.toml:5: experiment 'a': key 'hidden': layer sizes must be >= 1, got 0",
        "experiments.toml:6: experiment 'a': key 'activation': expected one of: relu, tanh, sigmoid, elu, "
        "selu, softplus, softsign, linear, gelu, swish; got 'relux' (did you mean 'relu'?)",
        "experiments.toml:7: experiment 'a': key 'dropout': must be < 1, got 1",
        "experiments.toml:8: experiment 'a': key 'batch_size': must be >= 1, got -5",
        "experiments.toml:9: experiment 'a': key 'epochs': expected an integer, got a string ('ten')",
    ]),
    ("duplicate names", BASE + BASE, [
        "experiments.toml:11: experiment 'raw-1': duplicate name 'raw-1' (first declared at line 2)",
    ]),
    ("missing required keys", """
[[experiment]]
name = "x"
part = "cnn"
""", ["experiments.toml:2: experiment 'x': missing required keys 'hidden', 'activation', 'batch_size', 'epochs'"]),
    ("missing name", """
[[experiment]]
part = "raw"
""", ["experiments.toml:2: experiment #1: missing required key 'name'"]),
    ("bad name", BASE.replace('"raw-1"', '"my model"'), [
        "experiments.toml:3: experiment 'my model': key 'name': 'my model' is not a valid name (letters, digits, "
        "'.', '_', '-'; no spaces)",
    ]),
    ("unknown part, dataset", BASE.replace('part = "raw"', 'part = "rwa"\ndataset = "cifar"'), [
        "experiments.toml:4: experiment 'raw-1': key 'part': expected one of: raw, hog, cnn, fashion; got 'rwa' (did you mean 'raw'?)",
        "experiments.toml:5: experiment 'raw-1': key 'dataset': expected one of: mnist, fashion; got 'cifar'",
    ]),
    ("unknown optimizer and argument", BASE + 'optimizer = { name = "rmsprop", lerning_rate = 0.1 }\n', [
        "experiments.toml:10: experiment 'raw-1': unknown key 'optimizer.lerning_rate' for rmsprop (did you mean "
        "'learning_rate'?); rmsprop takes: learning_rate, rho, momentum, epsilon, centered",
    ]),
    ("optimizer name", BASE + 'optimizer = { name = "adamw" }\n', [
        "experiments.toml:10: experiment 'raw-1': key 'optimizer.name': expected one of: rmsprop, adam, sgd; "
        "got 'adamw' (did you mean 'adam'?)",
    ]),
    ("negative learning rate", BASE + 'optimizer = { learning_rate = -0.1 }\n', [
        "experiments.toml:10: experiment 'raw-1': key 'optimizer.learning_rate': must be > 0, got -0.1",
    ]),
    ("hog too large and incomplete", """
[[experiment]]
name = "h"
part = "hog"
hog = { pixels_per_cell = 29 }
hidden = 1
activation = "relu"
batch_size = 1
epochs = 1
""", [
        "experiments.toml:5: experiment 'h': key 'hog.pixels_per_cell': must be <= 28, got 29",
        "experiments.toml:5: experiment 'h': missing required key 'hog.orientations'",
    ]),
    ("hog part without hog", BASE.replace('part = "raw"', 'part = "hog"'), [
        "experiments.toml:4: experiment 'raw-1': part 'hog' needs a 'hog' table, e.g. hog = { pixels_per_cell = 4, orientations = 8 }",
    ]),
    ("conv stack pooled to nothing", """
[[experiment]]
name = "c"
part = "cnn"
conv = [{ filters = 9, kernel = 5 }, { filters = 9, kernel = 5 }, { filters = 9, kernel = 3 }, { filters = 9, kernel = 3 }, { filters = 9, kernel = 3 }]
hidden = 5
activation = "relu"
batch_size = 1
epochs = 1
""", ["experiments.toml:5: experiment 'c': key 'conv': conv layer 5: pooling 2x2 on a 1x1 feature map leaves no pixels"]),
    ("conv layer keys", """
[[experiment]]
name = "c"
part = "cnn"
conv = [{ filter = 9, kernel = 5, padding = "full" }]
hidden = 5
activation = "relu"
batch_size = 1
epochs = 1
""", [
        "experiments.toml:5: experiment 'c': unknown key 'conv[1].filter' (did you mean 'filters'?)",
        "experiments.toml:5: experiment 'c': key 'conv[1].padding': expected one of: same, valid; got 'full'",
    ]),
    ("conv in an MLP part", BASE + 'conv = [{ filters = 1, kernel = 3 }]\n', [
        "experiments.toml:10: experiment 'raw-1': part 'raw' is an MLP part; a 'conv' stack belongs to part 'cnn' or 'fashion'",
    ]),
    ("from unknown, and circular", BASE + """
[[experiment]]
name = "b"
from = "raw-2"

[[experiment]]
name = "c"
from = "d"

[[experiment]]
name = "d"
from = "c"
""", [
        "experiments.toml:13: experiment 'b': key 'from': no experiment named 'raw-2' (did you mean 'raw-1'?)",
        "experiments.toml:21: experiment 'd': key 'from': circular inheritance (c -> d -> c)",
    ]),
    ("two chosen models in one part", BASE.replace("epochs = 150", "epochs = 150\nchosen = true") + """
[[experiment]]
name = "raw-2"
from = "raw-1"
chosen = true
""", ["experiments.toml:12: experiment 'raw-2': key 'chosen': part 'raw' already has a chosen model ('raw-1'); choose one per part"]),
    ("sweep problems", BASE + """
[[sweep]]
from = "raw-9"
vary = { hiden = [1] }
step = 2
""", [
        "experiments.toml:12: sweep #1 (from 'raw-9'): key 'from': no experiment named 'raw-9' (did you mean 'raw-1'?)",
        "experiments.toml:13: sweep #1 (from 'raw-9'): key 'vary.hiden': cannot vary 'hiden' (did you mean 'hidden'?)",
        "experiments.toml:14: sweep #1 (from 'raw-9'): unknown key 'step'",
    ]),
    ("sweep that expands to duplicates", BASE + """
[[sweep]]
from = "raw-1"
name = "raw-x"
vary = { hidden = [1, 2] }
""", ["experiments.toml:11: sweep #1 (from 'raw-1'), variant 'raw-x': expands to the duplicate name 'raw-x'"]),
    ("sweep with a bad value", BASE + """
[[sweep]]
from = "raw-1"
vary = { dropout = [0.2, 1.5] }
""", ["experiments.toml:13: sweep #1 (from 'raw-1'), variant 'raw-1-dropout1.5': key 'vary.dropout': must be < 1, got 1.5"]),
    ("unknown tables and keys", "[reprot]\ntitle = 'x'\n" + BASE + "[defaults]\nname = 'x'\nepochz = 3\n", [
        "experiments.toml:1: unknown table 'reprot' (did you mean 'report'?)",
        "experiments.toml:13: [defaults]: key 'name' cannot have a default (it belongs to one experiment)",
        "experiments.toml:14: [defaults]: unknown key 'epochz' (did you mean 'epochs'?)",
    ]),
    ("experiment written as a single table", "[experiment]\nname = 'x'\n", [
        "experiments.toml: no experiments: add at least one [[experiment]] table",
        "experiments.toml:1: 'experiment' must be an array of tables: write [[experiment]]",
    ]),
    ("empty file", "", ["experiments.toml: the file declares nothing; add at least one [[experiment]] table"]),
    ("syntax error keeps line and column", BASE + "epochs = = 3\n", [
        "experiments.toml:10:10: TOML syntax error: Invalid value",
    ]),
    ("syntax error: duplicate key", BASE + "epochs = 3\n", [
        "experiments.toml:10:11: TOML syntax error: Cannot overwrite a value",
    ]),
    ("report and requirements types", "[report]\nauthors = 'me'\n[requirements]\nmin_variants_per_part = 0\n" + BASE, [
        "experiments.toml:2: [report]: key 'authors': expected an array of names or { name = ..., id = ... } tables, got a string",
        "experiments.toml:4: [requirements]: key 'min_variants_per_part': must be >= 1, got 0",
    ]),
]


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_error_messages_are_exact(text, expected):
    assert errors_of(text) == expected


def test_load_names_the_file_it_could_not_read(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert info.value.errors == [f"{tmp_path / 'nope.toml'}: no such file"]
