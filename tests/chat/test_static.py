"""Static files across releases: after collectstatic the pages name every file by its hash
(the modules' imports too) and those are cached for good; without a manifest, or for a
file it lacks, the plain names, served from the apps' folders. WhiteNoise serves them
(chat/staticfiles.py): the gzip copy to a client that accepts it, 304 to one that has
the file."""

import gzip
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urljoin

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db

HASHED = re.compile(r"\.[0-9a-f]{12}\.\w+$")
# Every module specifier a JS file can hold: `from "x"` (imports, re-exports),
# `import "x"` and `import("x")`.
SPECIFIER = re.compile(r"""\bfrom\s*["']([^"']+)["']|\bimport\s*\(?\s*["']([^"']+)["']""")
SOURCE = Path(__file__).resolve().parents[2] / "chat" / "static" / "chat"
A_YEAR = 365 * 24 * 3600


def specifiers(code: str) -> list[str]:
    return [a or b for a, b in SPECIFIER.findall(code)]


def body(response) -> bytes:
    """The content of a response, whole or streamed (as a file may be)."""
    return b"".join(response) if response.streaming else response.content


def page_links(content: bytes) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', content.decode())


def cached_for_good(response) -> bool:
    cache_control = response["Cache-Control"]
    max_age = re.search(r"max-age=(\d+)", cache_control)
    return "immutable" in cache_control and bool(max_age) and int(max_age.group(1)) >= A_YEAR


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """A STATIC_ROOT after `manage.py collectstatic`, as in production."""
    root = tmp_path_factory.mktemp("collected")
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", "--noinput", verbosity=0)
    return root


@pytest.fixture
def production(settings):
    """DEBUG off (pytest-django's default) and WhiteNoise reading its files at start, as `serve` does."""
    settings.DEBUG = False
    settings.WHITENOISE_AUTOREFRESH = False
    return settings


@pytest.fixture
def static_root(production, collected, tmp_path) -> Path:
    """A copy of the collected STATIC_ROOT the test may make stale."""
    root = tmp_path / "static"
    shutil.copytree(collected, root)
    production.STATIC_ROOT = root
    return root


def test_page_names_hashed_modules_whose_imports_are_hashed_and_cached_for_good(client, static_root):
    links = page_links(client.get("/").content)
    assert len(links) == 2 and all(HASHED.search(link) for link in links), links
    css, app = sorted(links, key=lambda link: link.endswith(".js"))
    assert css.startswith("/static/chat/app.") and app.startswith("/static/chat/app.")
    assert cached_for_good(client.get(css))
    seen, queue = {app}, [app]
    while queue:  # app.js and every module it imports, and theirs
        url = queue.pop()
        response = client.get(url)
        assert response.status_code == 200, url
        assert "javascript" in response["Content-Type"] and cached_for_good(response), (url, response.headers)
        imports = specifiers(body(response).decode())
        assert all(HASHED.search(name) for name in imports), (url, imports)
        new = {urljoin(url, name) for name in imports} - seen
        seen |= new
        queue += new
    assert {HASHED.sub(".js", url.rsplit("/", 1)[1]) for url in seen} == {p.name for p in SOURCE.glob("*.js")}


def test_every_import_form_of_the_modules_is_hashed(static_root):
    """Whatever form a module's import takes (static, side-effect, re-export, dynamic),
    collectstatic rewrites it, or this fails: one left plain would load the plain file."""
    paths = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    for source in SOURCE.glob("*.js"):
        collected = (static_root / paths[f"chat/{source.name}"]).read_text()
        imports = specifiers(collected)
        assert len(imports) == len(specifiers(source.read_text())), source.name
        assert all(HASHED.search(name) for name in imports), (source.name, imports)


def test_admin_pages_name_hashed_files(client, static_root):
    content = client.get("/admin/login/").content
    links = page_links(content)
    assert links and all(HASHED.search(link) for link in links), links
    for link in links:
        response = client.get(link)
        assert response.status_code == 200 and cached_for_good(response), link


def hashed_name(static_root: Path, name: str) -> str:
    return json.loads((static_root / "staticfiles.json").read_text())["paths"][name]


@pytest.mark.parametrize("name", ["chat/app.js", "chat/app.css", "chat/crypto.js", "admin/css/base.css"])
def test_a_hashed_file_comes_gzipped_to_a_client_that_accepts_it(client, static_root, name):
    url = f"/static/{hashed_name(static_root, name)}"
    plain = client.get(url)
    assert plain.status_code == 200 and "Content-Encoding" not in plain and cached_for_good(plain)
    assert plain["Vary"] == "Accept-Encoding"
    packed = client.get(url, headers={"Accept-Encoding": "gzip, deflate, br, zstd"})
    assert packed.status_code == 200 and packed["Content-Encoding"] == "gzip", packed.headers
    assert packed["Vary"] == "Accept-Encoding" and cached_for_good(packed)
    assert packed["Content-Type"] == plain["Content-Type"] and packed["ETag"] == plain["ETag"]
    original = (static_root / hashed_name(static_root, name)).read_bytes()
    assert body(plain) == original
    compressed = body(packed)
    assert gzip.decompress(compressed) == original
    assert int(packed["Content-Length"]) == len(compressed) < len(original)


def test_collectstatic_writes_a_gzip_copy_of_every_module_and_stylesheet(static_root):
    paths = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    chat = [hashed for name, hashed in paths.items() if name.startswith("chat/")]
    assert len(chat) == len(list(SOURCE.iterdir()))
    for hashed in chat:
        packed = (static_root / f"{hashed}.gz").read_bytes()
        assert gzip.decompress(packed) == (static_root / hashed).read_bytes(), hashed


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_a_client_that_has_the_file_gets_304(client, static_root, encoding):
    url = f"/static/{hashed_name(static_root, 'chat/app.js')}"
    first = client.get(url, headers={"Accept-Encoding": encoding})
    again = client.get(url, headers={"Accept-Encoding": encoding, "If-None-Match": first["ETag"]})
    assert again.status_code == 304 and body(again) == b""
    assert again["ETag"] == first["ETag"] and cached_for_good(again)
    assert client.get(url, headers={"If-Modified-Since": first["Last-Modified"]}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


async def test_static_files_are_served_on_the_async_path(async_client, static_root):
    """`serve` runs the middleware chain async, as the async client does."""
    response = await async_client.get(
        f"/static/{hashed_name(static_root, 'chat/app.js')}", headers={"Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    assert cached_for_good(response) and b"JoinRoom" in gzip.decompress(response.content)


def test_a_missing_static_file_is_a_404(client, static_root):
    assert client.get("/static/chat/missing.js").status_code == 404
    assert client.get("/static/chat/../../config/settings.py").status_code == 404


def test_without_a_manifest_the_page_names_plain_files(client, production, tmp_path):
    """Development and the tests run no collectstatic: plain names, served from the apps' folders."""
    production.STATIC_ROOT = tmp_path / "never-collected"
    response = client.get("/")
    assert response.status_code == 200
    assert page_links(response.content) == ["/static/chat/app.css", "/static/chat/app.js"]
    script = client.get("/static/chat/app.js")
    assert script.status_code == 200 and script["Cache-Control"] == "max-age=60, public"
    assert b"JoinRoom" in body(script)
    assert client.get("/static/chat/app.js", headers={"If-None-Match": script["ETag"]}).status_code == 304
    assert client.get("/admin/login/").status_code == 200


@pytest.mark.parametrize("stale", ["file added since collectstatic", "hashed copy removed"])
def test_a_stale_manifest_never_names_a_missing_file(client, static_root, stale):
    manifest_path = static_root / "staticfiles.json"
    manifest = json.loads(manifest_path.read_text())
    if stale == "file added since collectstatic":
        del manifest["paths"]["chat/app.js"]
        manifest_path.write_text(json.dumps(manifest))
    else:
        (static_root / manifest["paths"]["chat/app.js"]).unlink()
    response = client.get("/")
    assert response.status_code == 200
    css, app = sorted(page_links(response.content), key=lambda link: link.endswith(".js"))
    assert app == "/static/chat/app.js" and HASHED.search(css)
    for url in [app, *(urljoin(app, name) for name in specifiers(body(client.get(app)).decode()))]:
        assert client.get(url).status_code == 200, url


def test_check_deploy_warns_while_files_lack_hashed_names(production, collected, tmp_path):
    def warned() -> bool:
        return "chat.W004" in [m.id for m in run_checks(include_deployment_checks=True)]

    production.STATIC_ROOT = tmp_path / "never-collected"
    assert warned()
    production.STATIC_ROOT = collected
    assert not warned()
    production.DEBUG = True
    production.STATIC_ROOT = tmp_path / "never-collected"
    assert not warned()
