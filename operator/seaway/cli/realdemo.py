"""The demo's story on a real node: real model servers, the real router, real predictions.

Where ``seaway cluster up`` could start a real node, ``seaway demo`` tells the same story as on the
simulated node with everything real: it trains two scikit-learn models, publishes their bundles
(and a third, broken one) on a small model store inside the cluster, and sends a steady stream of
predictions through the router's Service for the whole story. At every change it prints the share
of answers per revision beside the weight, and the failed requests; every answer is checked
against scikit-learn's own prediction for the revision that made it.

The broken revision is genuinely broken: its archive holds the second model's bytes under the
first model's pinned digest, so the model server refuses to load it and never becomes ready.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import yaml

from seaway.cli import demo as story
from seaway.cli import traffic
from seaway.handlers.modeldeployment import Settings
from seaway.planning import children

STORE = "model-store"
STORE_PORT = 8000
#: Predictions per second sent through the router during the story.
RATE = 40.0


class Models:
    """Two models trained here, their bundles as archives, and their predictions."""

    def __init__(self) -> None:
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.tree import DecisionTreeClassifier

        x, y = load_breast_cancer(return_X_y=True)
        x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0)
        self.fitted = {
            1: LogisticRegression(max_iter=10000, random_state=0).fit(x_train, y_train),
            2: DecisionTreeClassifier(max_depth=2, random_state=0).fit(x_train, y_train),
        }
        self.rows: list[list[float]] = x_test[:100].tolist()
        self.predictions = {v: m.predict(x_test[:100]).tolist() for v, m in self.fitted.items()}
        self.archives: dict[str, bytes] = {}
        self.digests: dict[int, str] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for version, model in self.fitted.items():
                self.archives[f"churn-v{version}.tar.gz"], self.digests[version] = _bundle(
                    model, Path(tmp) / f"v{version}", x_train
                )
        # version 3: the second model's bytes, but pinned to the first model's digest
        self.archives["churn-v3.tar.gz"] = self.archives["churn-v2.tar.gz"]
        self.digests[3] = self.digests[1]

    def model_of(self, version: int) -> tuple[str, str]:
        return f"http://{STORE}.{story.NAMESPACE}.svc:{STORE_PORT}/churn-v{version}.tar.gz", (
            self.digests[version]
        )


def _bundle(model: Any, out: Path, data: Any) -> tuple[bytes, str]:
    from seaway_serving import bundle

    manifest = bundle.create_from_estimator(model, out, name=story.NAME, data=data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(out.iterdir()):
            tar.add(path, arcname=path.name)
    model_bytes = (out / manifest.model_file).read_bytes()
    return buffer.getvalue(), "sha256:" + hashlib.sha256(model_bytes).hexdigest()


def store_manifests(archives: dict[str, bytes], image: str) -> list[dict[str, Any]]:
    """A ConfigMap holding the archives and a static file server for them, with its Service."""
    labels = {"app.kubernetes.io/name": STORE, "app.kubernetes.io/part-of": "seaway-demo"}
    meta = {"name": STORE, "namespace": story.NAMESPACE, "labels": labels}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "binaryData": {k: base64.b64encode(v).decode() for k, v in sorted(archives.items())},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True,
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "files",
                            "image": image,
                            "command": ["python", "-m", "http.server", str(STORE_PORT),
                                        "--directory", "/models"],
                            "ports": [{"name": "http", "containerPort": STORE_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": "http"},
                                               "periodSeconds": 1},
                            "securityContext": children.RESTRICTED_CONTAINER,
                            "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                        }],
                        "volumes": [{"name": "models", "configMap": {"name": STORE}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": labels,
                     "ports": [{"name": "http", "port": STORE_PORT, "targetPort": "http"}]},
        },
    ]


class RealDemo(story.Demo):
    """The story with real pods and live traffic (steps 3 to 5 differ from the simulated one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models: Models | None = None
        self.traffic: traffic.Traffic | None = None
        self.marks: list[float] = []

    # -- live traffic ------------------------------------------------------------------------
    def answers_line(self) -> str:
        """The answers since the last line printed: the split per revision and the failures."""
        assert self.traffic is not None
        now = time.monotonic()
        since = self.marks[-1] if self.marks else 0.0
        self.marks.append(now)
        window = [a for a in self.traffic.since(since) if a.at < now]
        return f"answers: {traffic.describe(window)}"

    def router(self, timeout: float) -> tuple[str, int]:
        """The router Service's address, once it answers (its pod ready, its rules in place)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.plane.kubectl("get", "service", story.NAME, "-n", story.NAMESPACE,
                                       "-o", "jsonpath={.spec.clusterIP}", check=False)
            address = found.stdout.strip()
            if found.returncode == 0 and address:
                import http.client

                try:
                    conn = http.client.HTTPConnection(address, children.SERVICE_PORT, timeout=2)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        return address, children.SERVICE_PORT
                except OSError:
                    pass
            time.sleep(0.5)
        raise click.ClickException(f"the router of {story.NAME} did not answer in {timeout:.0f}s")

    def watch_traffic(self, done: Any, what: str) -> story.Status:
        """Like ``watch``, with each row followed by the answers since the previous row."""
        return self.watch(done, what, extra=self.answers_line)

    # -- the story ---------------------------------------------------------------------------
    def first_revision(self) -> None:
        self.act(
            3,
            "Training two models, publishing them, applying the GitOps example",
            "Two scikit-learn models are trained here (a logistic regression, then a decision\n"
            "tree) and published as bundles on a small model store in the cluster, with a third,\n"
            "broken bundle. The GitOps example examples/gitops/apps/ml is applied with its model\n"
            "pointing at that store; revision 1 becomes stable once its servers load the model,\n"
            f"and from then on {RATE:.0f} predictions a second go through the router's Service.",
        )
        self.models = Models()
        namespace = story.APP / "namespace.yaml"
        self.shell(f"kubectl apply --server-side -f {namespace.relative_to(story.ROOT)}")
        self.kubectl("apply", "--server-side", "-f", str(namespace))
        if self.read() is not None:
            self.kubectl("delete", "md", story.NAME, "-n", story.NAMESPACE,
                         "--cascade=foreground", "--timeout=60s")
            self.say("      (removed the ModelDeployment of an earlier demo)")
        image = Settings().router_image
        self.shell(f"kubectl -n {story.NAMESPACE} apply -f model-store.yaml   "
                   "# the bundles in a ConfigMap, served over HTTP")
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                     input=json.dumps({"apiVersion": "v1", "kind": "List",
                                       "items": store_manifests(self.models.archives, image)}))
        self.kubectl("rollout", "status", f"deployment/{STORE}", "-n", story.NAMESPACE,
                     f"--timeout={self.timeout:.0f}s")
        churn = yaml.safe_load((story.APP / "churn.yaml").read_text())
        uri, digest = self.models.model_of(1)
        churn["metadata"]["namespace"] = story.NAMESPACE
        churn["spec"]["model"].update({"uri": uri, "digest": digest})
        churn["spec"]["server"]["resources"] = {"requests": {"cpu": "100m",
                                                             "memory": "256Mi"}}
        example = (story.APP / "churn.yaml").relative_to(story.ROOT)
        self.shell(f"kubectl apply --server-side -f {example}   # model.uri: {uri}")
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(churn))
        status = self.watch(lambda s: story.stable_is(s, 1), "revision 1 becoming stable")
        self.say(f"  Revision 1 serves all traffic: "
                 f"{story.condition(status, 'Ready')['message']}.")
        host, port = self.router(self.timeout)
        self.traffic = traffic.Traffic(host, port, story.NAME, self.models.rows, rate=RATE,
                                       max_seconds=self.timeout * 4).start()
        self.traffic.wait_for(1, timeout=self.timeout)
        self.marks.append(time.monotonic())
        self.say(f"  Sending {RATE:.0f} predictions a second to the router at {host}:{port} "
                 "(the Service churn).")
        self.pause()

    def canary(self) -> None:
        assert self.models is not None
        self.act(
            4,
            "A new model: revision 2 rolls out as a canary, under live traffic",
            "A new model is a new immutable revision. It gets 20% of the requests, then 50%,\n"
            "then all of them; each row below is followed by the answers since the row before,\n"
            "by the revision that made them (the router's seaway-revision header).",
        )
        uri, digest = self.models.model_of(2)
        self.patch({"model": {"uri": uri, "digest": digest}},
                   '{"spec":{"model":{"uri":".../churn-v2.tar.gz","digest":"sha256:..."}}}')
        status = self.watch_traffic(
            lambda s: story.stable_is(s, 2) and s.get("canaryRevision") is None,
            "revision 2 being promoted",
        )
        time.sleep(2.0)
        self.say(f"  Revision 2 is stable: {story.condition(status, 'Ready')['message']}; "
                 f"{self.answers_line()}.")
        self.pause()

    def failure(self) -> None:
        assert self.models is not None and self.traffic is not None
        self.act(
            5,
            "A broken model: revision 3 never becomes ready, and is reverted",
            "Revision 3's archive holds another model's bytes than its pinned digest says (a\n"
            "swapped bundle). The model server checks the bytes before it unpickles anything,\n"
            "refuses to load them and never becomes ready; progressDeadlineSeconds is 15 so the\n"
            "demo is quick. Nobody steps in: the operator keeps all traffic on revision 2.",
        )
        uri, digest = self.models.model_of(3)
        self.patch({"model": {"uri": uri, "digest": digest},
                    "rollout": {"progressDeadlineSeconds": 15}},
                   '{"spec":{"model":{"uri":".../churn-v3.tar.gz","digest":"sha256:..."},'
                   '"rollout":{"progressDeadlineSeconds":15}}}')
        status = self.watch_traffic(
            lambda s: story.stable_is(s, 2) and story.fate(s, 3) in ("Failed", "RolledBack"),
            "the revert to revision 2",
        )
        time.sleep(1.0)
        self.traffic.stop()
        refused: dict[str, Any] = next(
            (r for r in status.get("revisions", []) if r.get("number") == 3), {}
        )
        self.say(f"  Revision 3: {refused.get('fate')} ({refused.get('reason')}): "
                 f"{refused.get('message', '')[:160]}")
        self.say(f"  Last {self.answers_line()}.")

    def summary(self) -> tuple[int, int, int]:
        """Requests, failed, and answers that differ from scikit-learn's prediction."""
        assert self.traffic is not None and self.models is not None
        answers = self.traffic.snapshot()
        failed = sum(1 for a in answers if a.status != 200)
        wrong = sum(
            1 for a in answers
            if a.status == 200 and (a.revision not in self.models.predictions
                                    or self.models.predictions[a.revision][a.row]
                                    != a.prediction)
        )
        self.say()
        self.say(click.style(
            f"r1 -> r2 promoted, r3 reverted, {len(answers):,} requests, {failed} failed, "
            f"{wrong} answers different from scikit-learn's", bold=True))
        return len(answers), failed, wrong
