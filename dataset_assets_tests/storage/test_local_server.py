"""SeaweedServer: starts on derived ports, is idempotent, stops cleanly, keeps data."""

from pathlib import Path

from dataset_assets.storage import S3ObjectStore, SeaweedServer
from dataset_assets_tests.servers import free_port_base, port_is_free


def test_server_uses_only_its_port_block_restarts_idempotently_and_keeps_data(
    tmp_path: Path,
) -> None:
    base = free_port_base()
    server = SeaweedServer(tmp_path / "weed", port_base=base)
    assert f"-master.port={base + 1}" in server.command()
    assert "-ip.bind=127.0.0.1" in server.command()
    try:
        server.start()
        assert server.is_running()
        assert server.endpoint_url == f"http://127.0.0.1:{base}"
        pid = server.pid_path.read_text()
        SeaweedServer(tmp_path / "weed", port_base=base).start()  # another handle: no-op
        assert server.pid_path.read_text() == pid
        store = S3ObjectStore("keep", server.settings())
        store.ensure_bucket()
        store.put_bytes("x", b"survives restarts")
    finally:
        server.stop()
    assert not server.is_running()
    assert not server.pid_path.exists()
    assert port_is_free(base)
    assert (tmp_path / "weed" / "weed.log").stat().st_size > 0
    server.start()
    try:
        assert S3ObjectStore("keep", server.settings()).get_bytes("x") == b"survives restarts"
    finally:
        server.stop()
