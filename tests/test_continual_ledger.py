"""Tests for seal_lm.continual.ledger: versions and updates recorded, diffed and rolled back exactly, and
a commit interrupted at any point leaving the previous version current."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from seal_lm.continual.ledger import (
    ACCEPTED,
    DATABASE,
    INITIAL,
    REJECTED,
    RETRY_WITH_REPLAY,
    VERSIONS,
    Ledger,
    LedgerError,
    UpdateRecord,
)


def weights(seed: int) -> dict[str, torch.Tensor]:
    """A small model's worth of tensors, of several dtypes, different per seed."""
    g = torch.Generator().manual_seed(seed)
    return {
        "layer.q_proj.weight": torch.randn(4, 3, generator=g),
        "layer.v_proj.weight": torch.randn(4, 3, generator=g).to(torch.bfloat16),
        "embed.weight": torch.randn(5, 2, generator=g),
        "step": torch.tensor([seed], dtype=torch.int64),
    }


def record(decision: str = ACCEPTED, document: str = "doc-a", **changes) -> UpdateRecord:
    fields = dict(
        decision=decision,
        reason=f"{decision} in a test",
        document_id=document,
        document_path="stream/docs.jsonl",
        document_index=3,
        self_edit="The tower is 330 metres tall.\nIt opened in 1889.",
        probes=[{"question": "How tall is the tower?", "answers": ["330 metres"]}],
        scores_before=[0.0],
        scores_after=[1.0],
        retention_before=[1.0, 0.0],
        retention_after=[1.0, 0.0],
        adapter_sha256="ab" * 32,
        started="2026-01-01T00:00:00+00:00",
        details={"epochs": 10, "dropped_lines": 1},
    )
    return UpdateRecord(**{**fields, **changes})


def bits(tensor: torch.Tensor) -> bytes:
    """The raw bytes of a tensor, whatever its dtype."""
    return bytes(tensor.contiguous().view(-1).view(torch.uint8).tolist())


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert bits(a[name]) == bits(b[name]), name


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger") as opened:
        yield opened


# ---------------------------------------------------------------------------------------------
# Commit, list, get, diff
# ---------------------------------------------------------------------------------------------


def test_commit_records_versions_updates_and_the_current_pointer(ledger):
    assert ledger.current() is None and ledger.versions() == []

    v1 = ledger.commit(weights(1), record(INITIAL, document=""))
    v2 = ledger.commit(weights(2), record(ACCEPTED))

    assert [v.id for v in ledger.versions()] == [v1, v2]
    assert ledger.current().id == v2
    second = ledger.get(v2)
    assert second.parent == v1 and ledger.get(v1).parent is None
    assert second.file.is_file() and second.file.name == f"{second.weights_sha256}.safetensors"
    assert second.n_tensors == 4 and second.size_bytes == second.file.stat().st_size
    assert second.update.version == v2 and second.update.parent == v1
    assert second.update.record == record(ACCEPTED)  # every field round-trips through the database
    assert [(e.kind, e.version, e.previous) for e in ledger.events()] == [("commit", v1, None), ("commit", v2, v1)]
    assert_bit_identical(ledger.load_weights(), weights(2))


def test_reject_records_an_update_without_a_version(ledger):
    v1 = ledger.commit(weights(1), record(INITIAL, document=""))
    retried = ledger.reject(record(RETRY_WITH_REPLAY, document="doc-b"))
    rejected = ledger.reject(record(REJECTED, document="doc-b", details={"retry_of": retried}))

    assert ledger.current().id == v1 and len(ledger.versions()) == 1
    updates = ledger.updates()
    assert [(u.id, u.version, u.parent, u.record.decision) for u in updates[1:]] == [
        (retried, None, v1, RETRY_WITH_REPLAY),
        (rejected, None, v1, REJECTED),
    ]
    assert updates[2].record.details == {"retry_of": retried}


def test_decisions_are_checked_against_the_operation(ledger):
    with pytest.raises(LedgerError, match="use reject"):
        ledger.commit(weights(1), record(REJECTED))
    with pytest.raises(LedgerError, match="reject needs a decision other than"):
        ledger.reject(record(ACCEPTED))
    ledger.commit(weights(1), record(INITIAL))
    with pytest.raises(LedgerError, match="only for the first version"):
        ledger.commit(weights(2), record(INITIAL))


def test_a_record_that_is_not_plain_data_is_refused_before_anything_is_written(ledger):
    with pytest.raises(LedgerError, match="not plain JSON data"):
        ledger.commit(weights(1), record(details={"loss": torch.tensor(1.0)}))
    assert ledger.versions() == [] and ledger.updates() == []
    assert list((ledger.folder / VERSIONS).iterdir()) == []


def test_decided_documents_are_those_accepted_or_rejected(ledger):
    ledger.commit(weights(1), record(ACCEPTED, document="doc-a"))
    ledger.reject(record(REJECTED, document="doc-b"))
    ledger.reject(record(RETRY_WITH_REPLAY, document="doc-c"))  # interrupted mid-retry: still to do
    assert ledger.decided_documents() == {"doc-a", "doc-b"}


def test_diff_reports_each_tensor_change_and_the_updates_between(ledger):
    before = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.ones(2), "gone": torch.zeros(1), "shape": torch.zeros(2)}
    after = {"a": torch.tensor([1.0, 5.0, -1.0]), "b": torch.ones(2), "new": torch.zeros(1), "shape": torch.zeros(3)}
    v1 = ledger.commit(before, record(INITIAL))
    ledger.reject(record(REJECTED, document="doc-b"))
    v2 = ledger.commit(after, record(ACCEPTED, document="doc-c"))

    diff = ledger.diff(v1, v2)

    by_name = {t.name: t for t in diff.tensors}
    assert by_name["a"].status == "changed"
    assert by_name["a"].max_abs == pytest.approx(4.0)  # |-1 - 3|
    assert by_name["a"].l2 == pytest.approx(5.0)  # sqrt(0 + 3² + 4²)
    assert (by_name["b"].status, by_name["b"].max_abs, by_name["b"].l2) == ("unchanged", 0.0, 0.0)
    assert [by_name[n].status for n in ("gone", "new", "shape")] == ["removed", "added", "reshaped"]
    assert [t.name for t in diff.changed] == ["a", "gone", "new", "shape"]
    assert [u.record.document_id for u in diff.updates] == ["doc-b", "doc-c"]
    assert [u.record.document_id for u in ledger.diff(v2, v1).updates] == ["doc-b", "doc-c"]


def test_unknown_version_is_a_clear_error(ledger):
    v1 = ledger.commit(weights(1), record())
    with pytest.raises(LedgerError, match=rf"no version 7 .*\(versions: {v1}\)"):
        ledger.get(7)


# ---------------------------------------------------------------------------------------------
# Rollback
# ---------------------------------------------------------------------------------------------


def test_rollback_restores_bit_identical_weights_and_is_recorded(tmp_path):
    folder = tmp_path / "ledger"
    with Ledger.open(folder) as ledger:
        v1 = ledger.commit(weights(1), record(INITIAL))
        v2 = ledger.commit(weights(2), record(ACCEPTED))
        ledger.rollback(v1, reason="retention fell")

        assert ledger.current().id == v1
        assert_bit_identical(ledger.load_weights(), weights(1))
        assert (ledger.events()[-1].kind, ledger.events()[-1].version, ledger.events()[-1].previous) == (
            "rollback",
            v1,
            v2,
        )
        assert ledger.events()[-1].reason == "retention fell"
        with pytest.raises(LedgerError, match="already current"):
            ledger.rollback(v1)

        v3 = ledger.commit(weights(3), record(ACCEPTED))  # the next commit branches from the rolled-back version
        assert ledger.get(v3).parent == v1

    with Ledger.open(folder, readonly=True) as reopened:  # and all of it persists
        assert reopened.current().id == v3
        assert_bit_identical(reopened.load_weights(v2), weights(2))
        assert_bit_identical(reopened.load_weights(v1), weights(1))


# ---------------------------------------------------------------------------------------------
# Crashes, corruption, concurrency
# ---------------------------------------------------------------------------------------------


def test_a_commit_failing_inside_the_transaction_leaves_the_previous_version_current(tmp_path, monkeypatch):
    folder = tmp_path / "ledger"
    ledger = Ledger.open(folder)
    v1 = ledger.commit(weights(1), record(INITIAL))

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(Ledger, "_insert_update", crash)  # after the weights file and the version row
    with pytest.raises(RuntimeError, match="simulated crash"):
        ledger.commit(weights(2), record(ACCEPTED))
    monkeypatch.undo()

    assert ledger.current().id == v1
    assert [v.id for v in ledger.versions()] == [v1] and len(ledger.updates()) == 1
    assert len(list((folder / VERSIONS).iterdir())) == 2  # the new weights file, belonging to no version
    ledger.close()

    with Ledger.open(folder) as reopened:  # the orphan is removed; the ledger carries on
        assert [f.name for f in (folder / VERSIONS).iterdir()] == [reopened.get(v1).file.name]
        v2 = reopened.commit(weights(2), record(ACCEPTED))
        assert reopened.get(v2).parent == v1
        assert_bit_identical(reopened.load_weights(), weights(2))


def test_a_process_killed_inside_the_commit_transaction_leaves_the_ledger_consistent(tmp_path):
    folder = tmp_path / "ledger"
    with Ledger.open(folder) as ledger:
        v1 = ledger.commit(weights(1), record(INITIAL))
    killed = textwrap.dedent(
        f"""
        import os, torch
        from seal_lm.continual.ledger import Ledger, UpdateRecord
        Ledger._insert_event = lambda *args: os._exit(9)  # dies after the version and update rows, before COMMIT
        ledger = Ledger.open({str(folder)!r})
        ledger.commit({{"w": torch.ones(3)}}, UpdateRecord("accepted"))
        """
    )
    result = subprocess.run([sys.executable, "-c", killed], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr

    with Ledger.open(folder) as ledger:
        assert ledger.current().id == v1
        assert [v.id for v in ledger.versions()] == [v1] and len(ledger.updates()) == 1
        assert len(list((folder / VERSIONS).iterdir())) == 1
        assert_bit_identical(ledger.load_weights(), weights(1))


def test_a_corrupt_or_missing_weights_file_is_a_clear_error(ledger):
    v1 = ledger.commit(weights(1), record(INITIAL))
    file = ledger.get(v1).file
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(LedgerError, match=rf"version {v1}: weights file .* is corrupt"):
        ledger.load_weights(v1)
    file.unlink()
    with pytest.raises(LedgerError, match=rf"version {v1}: weights file .* is missing"):
        ledger.load_weights()


def test_a_second_writer_is_refused_while_readers_are_welcome(tmp_path):
    folder = tmp_path / "ledger"
    writer = Ledger.open(folder)
    with pytest.raises(LedgerError, match=rf"already open for writing by another process \(pid {os.getpid()}\)"):
        Ledger.open(folder)

    reader = Ledger.open(folder, readonly=True)
    v1 = writer.commit(weights(1), record(INITIAL))
    assert reader.current().id == v1  # sees the writer's commit (WAL)
    with pytest.raises(LedgerError, match="read-only"):
        reader.commit(weights(2), record())
    reader.close()

    writer.close()
    with Ledger.open(folder) as next_writer:  # the lock went with the first writer
        assert next_writer.current().id == v1


def test_opening_a_missing_ledger_read_only_is_a_clear_error(tmp_path):
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger.open(tmp_path / "nothing", readonly=True)


@pytest.mark.parametrize("readonly", [True, False])
def test_a_ledger_database_of_garbage_bytes_is_one_line(tmp_path, readonly):
    folder = tmp_path / "ledger"
    folder.mkdir()
    (folder / DATABASE).write_bytes(bytes(range(256)) * 20)
    with pytest.raises(LedgerError) as caught:
        Ledger.open(folder, readonly=readonly)
    message = str(caught.value)
    assert (
        "\n" not in message
        and "is not a ledger database or is damaged" in message
        and str(folder / DATABASE) in message
    )


def test_a_ledger_in_a_place_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    """What a read-only folder gives a non-root user (the tests may run as root, who may write anywhere)."""

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(tmp_path), "mkdir", refused)
    with pytest.raises(LedgerError) as caught:
        Ledger.open(tmp_path / "ledger")
    message = str(caught.value)
    assert (
        "\n" not in message
        and "cannot open the ledger in" in message
        and "for writing" in message
        and "Permission denied" in message
    )


def test_rollback_refuses_a_version_whose_weights_are_missing_or_altered(ledger):
    v1 = ledger.commit(weights(1), record(INITIAL))
    v2 = ledger.commit(weights(2), record())
    file = ledger.get(v1).file
    file.write_bytes(file.read_bytes()[:-1] + b"\0")
    assert "is corrupt" in ledger.weights_problem(v1)
    with pytest.raises(LedgerError, match=rf"cannot roll back to version {v1}: weights file .* is corrupt"):
        ledger.rollback(v1)
    file.unlink()
    with pytest.raises(LedgerError, match=rf"cannot roll back to version {v1}: weights file .* is missing"):
        ledger.rollback(v1)
    assert ledger.current().id == v2 and [e.kind for e in ledger.events()] == ["commit", "commit"]
    assert ledger.weights_problem(v2) == ""
