"""The routes document (format v1): what is accepted, what is refused and with which words."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from seaway.api.modeldeployment import ModelDeploymentSpec
from seaway.planning import children
from seaway_serving.router import config
from seaway_serving.router.config import ConfigError

GOOD: dict[str, Any] = {
    "version": 1,
    "modelDeployment": "churn",
    "backends": [
        {"name": "churn-r1", "revision": 1, "url": "http://churn-r1.ml.svc:80", "weight": 90},
        {"name": "churn-r2", "revision": 2, "url": "http://churn-r2.ml.svc:80", "weight": 10},
    ],
    "experiment": {"type": "ABTest", "sticky": {"header": "X-User-Id"},
                   "variants": [{"revision": 1, "weight": 70}, {"revision": 2, "weight": 30}]},
    "mirror": {"revision": 2, "percent": 20},
}


def edited(**changes: Any) -> str:
    doc = copy.deepcopy(GOOD)
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is ...:
            del target[int(last) if last.isdigit() else last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return json.dumps(doc)


def test_the_documented_example_parses():
    routes = config.parse(json.dumps(GOOD))
    assert routes.model_deployment == "churn"
    assert [(b.name, b.revision, b.host, b.port, b.weight) for b in routes.backends] == [
        ("churn-r1", 1, "churn-r1.ml.svc", 80, 90), ("churn-r2", 2, "churn-r2.ml.svc", 80, 10)]
    assert routes.experiment is not None and routes.experiment.type == "ABTest"
    assert routes.experiment.sticky == config.Sticky(header="x-user-id")
    assert routes.experiment.revisions == (1, 2)
    assert routes.mirror == config.Mirror(revision=2, percent=20)
    assert routes.summary() == "churn-r1=90 churn-r2=10 +ABTest(1,2) +mirror(r2 20%)"


def test_what_the_operator_writes_parses():
    """The contract: the operator's own builder (planning/children.py) produces a document
    this router accepts, with the URLs it writes."""
    spec = ModelDeploymentSpec.model_validate({
        "model": {"uri": "file:///models/churn", "format": "skops"},
        "server": {"image": "example/seaway-server:0.1.0"},
        "traffic": {
            "experiment": {"type": "Bandit", "variants": [{"revision": 3}, {"revision": 4}],
                           "bandit": {"algorithm": "EpsilonGreedy", "epsilon": "0.2",
                                      "explorationFloorPercent": 10}},
            "mirror": {"revision": 4, "percent": 5},
        },
    })
    document = children.routes("churn", "ml", {3: 80, 4: 20}, spec, mirror=4)
    configmap = children.router_configmap(md_name="churn", namespace="ml",
                                          owner=children.owner_reference("churn", "uid"),
                                          document=document)
    routes = config.parse(config.configmap_routes(configmap))
    assert [(b.name, b.url, b.weight) for b in routes.backends] == [
        ("churn-r3", "http://churn-r3.ml.svc:80", 80),
        ("churn-r4", "http://churn-r4.ml.svc:80", 20),
    ]
    assert routes.experiment is not None
    assert routes.experiment.bandit == config.BanditSettings("EpsilonGreedy", 10, 0.2)
    assert routes.mirror == config.Mirror(4, 5)


def test_overrides_replace_backend_urls():
    routes = config.parse(json.dumps(GOOD), {"churn-r2": "http://127.0.0.1:9999"})
    assert (routes.backends[1].host, routes.backends[1].port) == ("127.0.0.1", 9999)
    assert routes.backends[0].host == "churn-r1.ml.svc"


def test_defaults_and_optional_parts():
    doc = {"version": 1, "backends": [{"name": "a", "revision": 1, "url": "http://a",
                                       "weight": 100.0}],
           "experiment": None, "somethingNew": {"ignored": True}}
    routes = config.parse(json.dumps(doc))
    assert routes.backends[0].port == 80 and routes.backends[0].weight == 100
    assert routes.experiment is None and routes.mirror is None and routes.model_deployment == ""
    bandit = config.parse(edited(experiment={"type": "Bandit", "variants": [
        {"revision": 1}, {"revision": 2}]})).experiment
    assert bandit is not None and bandit.bandit == config.BanditSettings()


@pytest.mark.parametrize(("document", "reason", "message"), [
    ("{", "unparsable", "routes document is not valid JSON"),
    ("[1]", "unparsable", "must be a JSON object"),
    (edited(version=2), "version", "unknown routes format version 2: this router reads version 1"),
    (edited(version=...), "version", "unknown routes format version None"),
    (edited(version="1"), "version", "unknown routes format version '1'"),
    (edited(backends=[]), "invalid", "backends must be a non-empty list"),
    (edited(backends__1__weight=20), "weights",
     "backend weights sum to 110, not 100 (churn-r1=90, churn-r2=20)"),
    (edited(backends__1__weight=-1), "invalid", "backend churn-r2: weight -1 is outside 0..100"),
    (edited(backends__1__weight=10.5), "invalid", "weight must be an integer, got 10.5"),
    (edited(backends__1__weight=True), "invalid", "weight must be an integer, got True"),
    (edited(backends__1__name="churn-r1"), "invalid", "backend name churn-r1 appears twice"),
    (edited(backends__1__revision=1), "invalid", "revision 1 appears in two backends"),
    (edited(backends__1__url="https://churn-r2.ml.svc"), "invalid",
     "url 'https://churn-r2.ml.svc' must be http://host[:port]"),
    (edited(backends__1__url="http://churn-r2/v2"), "invalid", "must not have a path or query"),
    (edited(backends__1__url="http://churn-r2:99999"), "invalid", "url 'http://churn-r2:99999'"),
    (edited(backends__1__url=...), "invalid", "backend churn-r2: url must be a string"),
    (edited(experiment__variants__1__revision=7), "unknown_backend",
     "experiment variant revision 7 is not among the backends"),
    (edited(experiment__variants__1__weight=20), "weights",
     "ABTest variant weights sum to 90, not 100"),
    (edited(experiment__variants__1__weight=...), "invalid",
     "experiment.variants[1] (revision 2) has no weight; every ABTest variant needs one"),
    (edited(experiment__variants=[{"revision": 1, "weight": 100}]), "invalid",
     "experiment.variants must list 2 to 8 variants"),
    (edited(experiment__type="Canary"), "invalid", "experiment.type 'Canary' is neither"),
    (edited(experiment__sticky={"header": "X-User", "cookie": "s"}), "invalid",
     "experiment.sticky sets exactly one of header or cookie"),
    (edited(experiment__sticky={"header": "X User"}), "invalid",
     "experiment.sticky: 'X User' is not a valid header name"),
    (edited(experiment={"type": "Bandit", "variants": [{"revision": 1}, {"revision": 2}],
                        "bandit": {"explorationFloorPercent": 60}}), "invalid",
     "explorationFloorPercent 60 is outside 0..50"),
    (edited(experiment={"type": "Bandit", "variants": [{"revision": 1}, {"revision": 2}],
                        "bandit": {"epsilon": 0.1}}), "invalid",
     'experiment.bandit.epsilon 0.1 must be a decimal string such as "0.1"'),
    (edited(experiment={"type": "Bandit", "variants": [{"revision": 1}, {"revision": 2}],
                        "bandit": {"epsilon": "1.5"}}), "invalid",
     "experiment.bandit.epsilon 1.5 is not between 0 and 1"),
    (edited(mirror__revision=9), "unknown_backend", "mirror revision 9 is not among the backends"),
    (edited(mirror__percent=0), "invalid", "mirror.percent 0 is outside 1..100"),
])
def test_refusals_say_what_is_wrong(document: str, reason: str, message: str):
    with pytest.raises(ConfigError) as caught:
        config.parse(document)
    assert caught.value.reason == reason
    assert message in str(caught.value)


def test_floor_times_variants_over_100_is_refused():
    backends = [{"name": f"b{i}", "revision": i, "url": f"http://b{i}", "weight": 0}
                for i in range(1, 4)]
    backends[0]["weight"] = 100
    doc = {"version": 1, "backends": backends,
           "experiment": {"type": "Bandit", "variants": [{"revision": i} for i in (1, 2, 3)],
                          "bandit": {"explorationFloorPercent": 40}}}
    with pytest.raises(ConfigError, match="explorationFloorPercent 40 times 3 variants exceeds"):
        config.parse(json.dumps(doc))


def test_a_configmap_manifest_is_read_from_json_or_yaml():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "churn-router"},
          "data": {"routes.json": json.dumps(GOOD)}}
    assert config.parse(config.routes_text(json.dumps(cm))).model_deployment == "churn"
    yaml_text = ("kind: ConfigMap\nmetadata: {name: churn-router}\ndata:\n  routes.json: |\n"
                 + "".join(f"    {line}\n" for line in json.dumps(GOOD, indent=1).splitlines()))
    assert config.parse(config.routes_text(yaml_text, yaml_allowed=True)).backends[1].weight == 10
    bare = json.dumps(GOOD)
    assert config.routes_text(bare) == bare
    with pytest.raises(ConfigError, match=r"ConfigMap churn-router has no data key routes\.json"):
        config.routes_text(json.dumps({**cm, "data": {"other": "x"}}))
    with pytest.raises(ConfigError) as caught:
        config.routes_text("kind: [", yaml_allowed=True)
    assert caught.value.reason == "unparsable" and "not valid YAML" in str(caught.value)
