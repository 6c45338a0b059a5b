"""Image URL resolution: local files under the document root only, uploads, remote URLs, traversal refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchlabel.serve.sources import ImageSourceError, LocalImage, RemoteImage, resolve_image_url


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub dir").mkdir(parents=True)
    (root / "sub dir" / "cat 1.jpg").write_bytes(b"x")
    (root / "a.png").write_bytes(b"x")
    (root / "lit%2e%2e.jpg").write_bytes(b"x")  # a valid name that looks encoded (issue 12, case 9)
    (tmp_path / "secret.txt").write_text("secret")
    (root / "escape.jpg").symlink_to(tmp_path / "secret.txt")
    (root / "inside-link.png").symlink_to(root / "a.png")
    (root / "dir-link").symlink_to(tmp_path)
    return root


def resolve(url: object, root: Path, *, allow_remote: bool = False) -> object:
    return resolve_image_url(url, root=root, label_studio_url="http://127.0.0.1:8080", allow_remote_urls=allow_remote)


@pytest.mark.parametrize(
    ("url", "relative"),
    [
        ("/data/local-files/?d=a.png", "a.png"),
        ("/data/local-files?d=a.png", "a.png"),
        ("http://localhost:8080/data/local-files/?d=sub%20dir/cat%201.jpg", "sub dir/cat 1.jpg"),
        ("/data/local-files/?d=sub+dir/cat+1.jpg", "sub dir/cat 1.jpg"),
        ("/data/local-files/?d=./sub dir/./cat 1.jpg", "./sub dir/./cat 1.jpg"),
        ("/data/local-files/?d=inside-link.png", "inside-link.png"),
        ("/data/local-files/?d=lit%252e%252e.jpg", "lit%2e%2e.jpg"),  # decoded exactly once
    ],
)
def test_local_files_resolve_inside_root(root: Path, url: str, relative: str) -> None:
    source = resolve(url, root)
    assert isinstance(source, LocalImage)
    assert source.relative == relative
    assert source.path.is_relative_to(root.resolve())
    assert source.path.is_file()


@pytest.mark.parametrize(
    "url",
    [
        "/data/local-files/?d=../../etc/passwd",
        "/data/local-files/?d=..%2F..%2Fetc%2Fpasswd",          # encoded once: decoded to ../../etc/passwd
        "/data/local-files/?d=sub dir/../../secret.txt",
        "/data/local-files/?d=/etc/passwd",
        "/data/local-files/?d=%2Fetc%2Fpasswd",
        "/data/local-files/?d=~/.ssh/id_rsa",
        "/data/local-files/?d=C:/Windows/win.ini",
        "/data/local-files/?d=..\\secret.txt",
        "/data/local-files/?d=a.png%00.jpg",
        "/data/local-files/?d=escape.jpg",                       # symlink leaving the root
        "/data/local-files/?d=dir-link/secret.txt",              # directory symlink leaving the root
    ],
)
def test_traversal_is_refused_with_403(root: Path, url: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ImageSourceError) as info:
        resolve(url, root)
    assert info.value.status_code == 403, info.value.message
    assert "refused" in info.value.message
    assert any("image refused" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/data/local-files/?d=missing.jpg", 404),
        ("/data/local-files/?d=%252e%252e%252fsecret.txt", 404),  # decoded once: a file named "%2e%2e%2fsecret.txt"
        ("/data/local-files/?d=sub dir", 404),                   # a folder, not a file
        ("/data/local-files/?d=", 400),
        ("/data/local-files/", 400),
        ("/data/local-files/?d=a.png&d=b.png", 400),
        ("data:image/png;base64,AAAA", 400),
        ("ftp://example.com/a.png", 400),
        ("s3://bucket/a.png", 400),
        ("just-a-name.jpg", 400),
        ("", 400),
        (None, 400),
        (42, 400),
        ("https://example.com/cat.jpg", 403),                    # remote URLs are off by default
        ("/data/upload/1/../../secret", 403),
    ],
)
def test_unusable_urls_get_4xx(root: Path, url: object, status: int) -> None:
    with pytest.raises(ImageSourceError) as info:
        resolve(url, root)
    assert info.value.status_code == status, info.value.message


def test_uploads_are_fetched_from_label_studio(root: Path) -> None:
    source = resolve("/data/upload/3/abc-cat.jpg", root)
    assert source == RemoteImage(url="http://127.0.0.1:8080/data/upload/3/abc-cat.jpg", label_studio=True)


def test_remote_urls_only_when_allowed(root: Path) -> None:
    source = resolve("https://example.com/cat.jpg?x=1", root, allow_remote=True)
    assert source == RemoteImage(url="https://example.com/cat.jpg?x=1", label_studio=False)


def test_root_given_through_a_symlink_still_works(root: Path, tmp_path: Path) -> None:
    link = tmp_path / "root-link"
    os.symlink(root, link)
    source = resolve("/data/local-files/?d=a.png", link)
    assert isinstance(source, LocalImage) and source.path == (root / "a.png").resolve()
