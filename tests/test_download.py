"""The VOC download, offline: a fake VOC archive served from 127.0.0.1 goes through the real
download -> MD5 -> extraction -> dataset path; every failure leaves nothing half-written."""
from __future__ import annotations

import hashlib
import re
import tarfile
from pathlib import Path

import pytest
import torch
from vocfake import FileServer, make_voc_tar, make_voc_tree

from fcos_lib.commands.download import main
from fcos_lib.data import VOC2007DetectionTiny, download
from fcos_lib.data.download import Archive, DownloadError, download_voc2007

NAME = "VOCtrainval_06-Nov-2007.tar"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[bytes, str]:
    """The bytes of a fake VOC 2007 trainval tar and their MD5."""
    base = tmp_path_factory.mktemp("vocsrc")
    make_voc_tree(base)
    md5 = make_voc_tar(base, base / NAME)
    return (base / NAME).read_bytes(), md5


def leftovers(root: Path) -> list[str]:
    """Names in ``root`` that a failed download must not leave: archives, trees, temp dirs."""
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".part"))


def test_download_verify_extract_and_read(tmp_path, archive):
    data, md5 = archive
    with FileServer({"/" + NAME: data}) as server:
        folder = download_voc2007(tmp_path, url=server.url("/" + NAME), md5=md5, progress=False)
        assert folder == tmp_path / "VOCdevkit" / "VOC2007"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["VOCdevkit", NAME]
        assert hashlib.md5((tmp_path / NAME).read_bytes()).hexdigest() == md5
        # A second call finds the extracted tree and asks the server nothing.
        asked = len(server.requests)
        download_voc2007(tmp_path, url=server.url("/" + NAME), md5=md5, progress=False)
        assert len(server.requests) == asked == 1
    train = VOC2007DetectionTiny(tmp_path, "train", image_size=32)
    assert train.ids == ["000001", "000003"] and len(VOC2007DetectionTiny(tmp_path, "val")) == 2
    image, target = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert target["labels"].tolist() == [train.class_names.index("dog"),
                                         train.class_names.index("car")]


def test_resume_with_range(tmp_path, archive):
    data, md5 = archive
    (tmp_path / (NAME + ".part")).write_bytes(data[:5000])
    with FileServer({"/v.tar": data}) as server:
        download_voc2007(tmp_path, url=server.url("/v.tar"), md5=md5, progress=False)
    assert server.requests == [("/v.tar", "bytes=5000-", 206)]
    assert (tmp_path / NAME).read_bytes() == data and not (tmp_path / (NAME + ".part")).exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path, archive):
    data, md5 = archive
    (tmp_path / (NAME + ".part")).write_bytes(b"x" * 5000)  # would corrupt the file if kept
    with FileServer({"/v.tar": data}, mode="ignore_range") as server:
        download_voc2007(tmp_path, url=server.url("/v.tar"), md5=md5, progress=False)
    assert server.requests == [("/v.tar", "bytes=5000-", 200)]
    assert (tmp_path / NAME).read_bytes() == data


def test_wrong_checksum_leaves_nothing(tmp_path, archive):
    data, _ = archive
    with FileServer({"/v.tar": data}) as server, pytest.raises(DownloadError) as err:
        download_voc2007(tmp_path, url=server.url("/v.tar"), md5="0" * 32, progress=False)
    assert "MD5" in str(err.value) and f"place it in {tmp_path.resolve()}" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # not even the part file: its bytes are wrong


def test_dropped_connection_keeps_only_the_part_file_then_resumes(tmp_path, archive):
    data, md5 = archive
    with FileServer({"/v.tar": data}, mode="drop") as server, pytest.raises(DownloadError) as err:
        download_voc2007(tmp_path, url=server.url("/v.tar"), md5=md5, progress=False)
    message = str(err.value)
    assert "connection closed" in message and "resumes" in message and NAME in message
    assert leftovers(tmp_path) == []
    part = tmp_path / (NAME + ".part")
    assert 0 < part.stat().st_size < len(data) and data.startswith(part.read_bytes())
    size = part.stat().st_size
    with FileServer({"/v.tar": data}) as server:
        download_voc2007(tmp_path, url=server.url("/v.tar"), md5=md5, progress=False)
    assert server.requests == [("/v.tar", f"bytes={size}-", 206)]
    assert (tmp_path / NAME).read_bytes() == data and (tmp_path / "VOCdevkit").is_dir()


def test_archive_escaping_its_folder_is_refused(tmp_path):
    base = tmp_path / "src"
    make_voc_tree(base)
    bad = tmp_path / "bad.tar"
    md5 = make_voc_tar(base, bad, extra={"../evil.txt": b"owned"})
    root = tmp_path / "data"
    with FileServer({"/v.tar": bad.read_bytes()}) as server, pytest.raises(DownloadError) as err:
        download_voc2007(root, url=server.url("/v.tar"), md5=md5, progress=False)
    assert "'../evil.txt'" in str(err.value) and "refusing" in str(err.value)
    assert not (tmp_path / "evil.txt").exists()
    # The verified archive stays (the error says to delete it); no tree, no temporary folder.
    assert leftovers(root) == [NAME]


@pytest.mark.parametrize("name, kind, link", [
    ("/etc/passwd", tarfile.REGTYPE, ""),
    ("VOCdevkit/../../x", tarfile.REGTYPE, ""),
    ("VOCdevkit/link", tarfile.SYMTYPE, "../../outside"),
    ("VOCdevkit/abs", tarfile.SYMTYPE, "/etc/passwd"),
    ("VOCdevkit/hard", tarfile.LNKTYPE, "../x"),
    ("VOCdevkit/fifo", tarfile.FIFOTYPE, ""),
])
@pytest.mark.parametrize("python", ["with the data filter", "without it"])
def test_unsafe_members_are_refused(tmp_path, monkeypatch, name, kind, link, python):
    """Each kind of hostile member, in an archive otherwise VOC's, is refused by name, with
    Python's tar "data" filter and without it (Python 3.10.0-3.10.11): nothing is left."""
    if python == "without it":
        monkeypatch.delattr(tarfile, "data_filter")
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        for folder in ("VOCdevkit", "VOCdevkit/VOC2007"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        tar.addfile(info)
    root = tmp_path / "data" / "inner"
    root.mkdir(parents=True)
    with pytest.raises(DownloadError, match=f"refusing .*{re.escape(repr(name))}"):
        download.extract(bad, root, download.VOC2007_TRAINVAL)
    assert list(root.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.tar", "data"]


def test_links_that_stay_inside_are_extracted_where_python_can_check_them(tmp_path,
                                                                          monkeypatch):
    src = tmp_path / "src"
    tree = make_voc_tree(src)
    (tree / "link").symlink_to("JPEGImages")
    good = tmp_path / "good.tar"
    make_voc_tar(src, good)
    root = tmp_path / "data"
    root.mkdir()
    download.extract(good, root, download.VOC2007_TRAINVAL)
    assert (root / "VOCdevkit" / "VOC2007" / "link").is_symlink()
    monkeypatch.delattr(tarfile, "data_filter")     # then no link at all is extracted
    with pytest.raises(DownloadError, match="'VOCdevkit/VOC2007/link' has a link"):
        download.extract(good, tmp_path / "data", download.VOC2007_TRAINVAL)


def test_http_error_and_unreachable_server(tmp_path):
    with FileServer({}) as server, pytest.raises(DownloadError, match="HTTP 404"):
        download_voc2007(tmp_path, url=server.url("/missing.tar"), progress=False)
    assert len(server.requests) == 1  # an HTTP error is not retried
    port = server.httpd.server_address[1]  # closed now: connection refused
    with pytest.raises(DownloadError, match="download .* by hand|place it in"):
        download_voc2007(tmp_path, url=f"http://127.0.0.1:{port}/v.tar", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_archive_placed_by_hand(tmp_path, archive):
    data, md5 = archive
    (tmp_path / NAME).write_bytes(data[:-10])
    with pytest.raises(DownloadError, match="Delete it"):
        download_voc2007(tmp_path, url="http://127.0.0.1:9/unused", md5=md5, progress=False)
    (tmp_path / NAME).write_bytes(data)  # the right file: extracted, nothing downloaded
    download_voc2007(tmp_path, url="http://127.0.0.1:9/unused", md5=md5, progress=False)
    assert (tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg").is_file()


def test_test_archive_merges_into_the_tree(tmp_path, archive, monkeypatch):
    data, md5 = archive
    base = tmp_path / "testsrc"
    tree = make_voc_tree(base)
    (tree / "ImageSets" / "Main" / "test.txt").write_text("000002\n")
    test_tar = tmp_path / "test.tar"
    test_md5 = make_voc_tar(base, test_tar)
    root = tmp_path / "data"
    with FileServer({"/tv.tar": data, "/test.tar": test_tar.read_bytes()}) as server:
        monkeypatch.setattr(download, "VOC2007_TEST", Archive(
            "VOCtest_06-Nov-2007.tar", test_md5, (server.url("/test.tar"),), "1 kB"))
        download_voc2007(root, test=True, url=server.url("/tv.tar"), md5=md5, progress=False)
    assert len(VOC2007DetectionTiny(root, "test")) == 1 and len(VOC2007DetectionTiny(root, "train")) == 2


def test_dataset_download_flag(tmp_path, archive, monkeypatch):
    data, md5 = archive
    with pytest.raises(FileNotFoundError, match="python -m fcos_lib download voc2007 --root"):
        VOC2007DetectionTiny(tmp_path, "train")
    with FileServer({"/v.tar": data}) as server:
        monkeypatch.setattr(download, "VOC2007_TRAINVAL",
                            Archive(NAME, md5, (server.url("/v.tar"),), "1 kB"))
        dataset = VOC2007DetectionTiny(tmp_path, "val", download=True, image_size=16)
    assert len(dataset) == 2 and dataset[0][0].shape == (3, 16, 16)


def test_dataset_download_flag_finishes_an_unmarked_tree(tmp_path, archive, monkeypatch):
    # A tree with its split file but without the marker of a finished extraction (an
    # interrupted run, a copy by hand) is downloaded and extracted again.
    data, md5 = archive
    make_voc_tree(tmp_path)
    with FileServer({"/v.tar": data}) as server:
        trainval = Archive(NAME, md5, (server.url("/v.tar"),), "1 kB")
        monkeypatch.setattr(download, "VOC2007_TRAINVAL", trainval)
        marker = download.marker(tmp_path, trainval)
        VOC2007DetectionTiny(tmp_path, "train", image_size=16)  # without download: as it is
        assert len(server.requests) == 0 and not marker.exists()
        VOC2007DetectionTiny(tmp_path, "train", download=True, image_size=16)
        assert len(server.requests) == 1 and marker.is_file()
        VOC2007DetectionTiny(tmp_path, "val", download=True, image_size=16)  # marked: no request
        assert len(server.requests) == 1


def test_command_line(tmp_path, archive, capsys):
    data, md5 = archive
    with FileServer({"/v.tar": data}) as server:
        url = server.url("/v.tar")
        assert main(["voc2007", "--root", str(tmp_path / "bad"), "--url", url,
                     "--md5", "f" * 32, "--quiet"]) == 2
        assert "error:" in capsys.readouterr().err
        assert main(["voc2007", "--root", str(tmp_path / "ok"), "--url", url, "--md5", md5,
                     "--quiet"]) == 0
    assert "ready in" in capsys.readouterr().out
    assert (tmp_path / "ok" / "VOCdevkit" / "VOC2007" / "Annotations" / "000004.xml").is_file()


@pytest.mark.parametrize("options, message", [
    ({"url": "ftp://example.org/v.tar"}, "not an http:// or https:// address"),
    ({"url": "data/v.tar"}, "not an http:// or https:// address"),
    ({"md5": "1234"}, "not an MD5 checksum: give its 32 hex digits"),
    ({"md5": "g" * 32}, "not an MD5 checksum: give its 32 hex digits"),
])
def test_bad_url_or_md5_is_refused_before_anything(tmp_path, options, message):
    with pytest.raises(DownloadError, match=message):
        download_voc2007(tmp_path / "data", progress=False, **options)
    assert not (tmp_path / "data").exists()


def test_command_line_bad_arguments_print_an_error_not_a_traceback(tmp_path, run_main):
    for option in (["--url", "ftp://example.org/v.tar"], ["--md5", "xyz"]):
        done = run_main("download", "voc2007", "--root", str(tmp_path / "data"), "--quiet",
                        *option)
        assert done.returncode == 2 and done.stderr.startswith("error: ")
        assert "Traceback" not in done.stderr
