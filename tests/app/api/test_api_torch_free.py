"""The API process never imports torch or lightning: import every module of the API process
(app factory, routes, pages, services, worker parent), create the app and hit every route and
page (forms included) in a fresh interpreter, then look at `sys.modules`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import app.api, app.services, app.web
    from fastapi.testclient import TestClient
    from app.api.main import create_app
    from app.settings import Settings
    from app.tokens import create_token

    url, artifacts = sys.argv[1], sys.argv[2]
    for package in (app.api, app.web, app.services):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    for module in ("app.worker.loop", "app.queue", "app.worker.registry", "app.client", "app.urls"):
        importlib.import_module(module)
    app = create_app(Settings(database_url=url, artifact_dir=artifacts))
    with app.state.session_factory() as session:
        _, token = create_token(session, "torch-free")
        session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    spec = {"kind": "expand", "data": {"name": "digits"}, "model": {"kind": "mlp", "width": 8}}
    statuses = {}
    with TestClient(app) as client:
        job = client.post("/api/v1/jobs", json=spec, headers=auth).json()
        jid = str(job["id"])
        paths = {p: sorted(ops) for p, ops in app.openapi()["paths"].items()}
        for page in ("/", "/jobs", "/jobs/{job_id}", "/results", "/submit", "/docs"):
            paths[page] = ["get"]
        for template, methods in paths.items():
            path = template.replace("{job_id}", jid).replace("{name}", "base.ckpt")
            for method in methods:
                if path.endswith(("/cancel", "/events")):
                    continue  # cancel first, so that the event stream below ends at once
                body = spec if method == "post" else None
                response = client.request(method.upper(), path, json=body, headers=auth)
                statuses[f"{method.upper()} {template}"] = response.status_code
        cancel = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=auth)
        statuses["cancel"] = cancel.status_code
        statuses["events"] = client.get(f"/api/v1/jobs/{job['id']}/events").status_code
        statuses["csv"] = client.get("/api/v1/results?format=csv").status_code
        form = {"spec": json.dumps(spec), "token": token}
        statuses["submit form"] = client.post("/submit", data=form).status_code
        cancel_form = client.post(f"/jobs/{jid}/cancel", data={"token": token})
        statuses["cancel form"] = cancel_form.status_code
        statuses["style"] = client.get("/static/style.css").status_code
        statuses["plotly"] = client.get("/static/vendor/plotly.min.js").status_code
    roots = ("torch", "lightning", "pytorch_lightning")
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in roots)
    print(json.dumps({"statuses": statuses, "heavy": heavy}))
    """
)


def test_api_never_imports_torch(sqlite_url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, sqlite_url, str(tmp_path / "artifacts")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    statuses = report["statuses"]
    assert statuses["POST /api/v1/jobs"] == 201, statuses
    assert statuses["GET /api/v1/jobs/{job_id}"] == 200
    assert statuses["cancel"] == 200 and statuses["events"] == 200 and statuses["csv"] == 200
    assert statuses["style"] == 200 and statuses["plotly"] == 200
    assert statuses["submit form"] < 400 and statuses["cancel form"] < 400, statuses
    assert len(statuses) >= 12
    assert all(code < 500 for code in statuses.values()), statuses
    assert report["heavy"] == []
