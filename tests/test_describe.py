"""`archipelago explain` text: phase, placement, conditions with hints, recent Events."""

from archipelago import describe


def test_a_waiting_job_shows_its_reason_and_a_hint():
    obj = {
        "kind": "TrainingJob",
        "metadata": {"name": "llm", "namespace": "team-a"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "Scheduled",
                    "status": "False",
                    "reason": "TopologyFragmented",
                    "message": "needs 64 x H800 in one island; largest free island has 40 x H800 (b)",
                }
            ],
        },
    }
    events = [
        {
            "lastTimestamp": "2026-11-21T10:00:00Z",
            "type": "Warning",
            "reason": "TopologyFragmented",
            "message": "needs 64 x H800",
        }
    ]
    lines = describe.render(obj, events).splitlines()
    assert lines[0] == "TrainingJob team-a/llm: Pending"
    assert "Scheduled=False TopologyFragmented: needs 64 x H800 in one island" in lines[1]
    assert lines[2].strip().startswith("hint: free cards are spread over several domains")
    assert lines[-1].strip().endswith("Warning TopologyFragmented: needs 64 x H800")


def test_a_running_job_shows_where_it_runs_and_no_hint():
    obj = {
        "kind": "TrainingJob",
        "metadata": {"name": "llm", "namespace": "team-a"},
        "status": {
            "phase": "Running",
            "placement": {"pods": 2, "cards": 16, "nodes": ["b-0", "b-1"], "islands": ["b"]},
            "conditions": [{"type": "Scheduled", "status": "True", "reason": "Placed", "message": "2 pods"}],
        },
    }
    text = describe.render(obj)
    assert "runs 2 pods with 16 cards on 2 nodes (b-0, b-1) in b" in text and "hint" not in text


def test_a_restarted_job_shows_its_restarts_and_the_nodes_it_avoids():
    status = {"phase": "Pending", "restarts": 2, "avoidNodes": ["b-0", "b-3"]}
    text = describe.render({"kind": "TrainingJob", "metadata": {"name": "llm"}, "status": status})
    assert "restarts: 2" in text and "avoids nodes (from its last restart): b-0, b-3" in text


def test_every_scheduler_reason_has_a_hint():
    from archipelago.placement import plan

    assert set(plan.ReasonCode) <= set(describe.HINTS)


def test_explain_without_a_cluster_is_a_clear_error_not_a_traceback(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from archipelago import cli

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(cli.main, ["explain", "tj/llm"])
    assert result.exit_code == 1 and "no cluster to ask" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
