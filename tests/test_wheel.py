"""A built wheel carries the templates and static files: keyparty works
installed, not only from a checkout."""

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = textwrap.dedent(
    """
    import keyparty, sys
    assert keyparty.__file__.startswith(sys.argv[1]), keyparty.__file__
    from keyparty import create_app
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    assert app.template_folder.startswith(sys.argv[1]), app.template_folder
    client = app.test_client()
    assert client.post("/host/events", data={"name": "Wheel"}).status_code == 302
    for path in ("/host/", "/host/e/wheel", "/e/wheel/register", "/static/keyparty.css"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    # The compiled Japanese catalogue ships in the wheel.
    japanese = client.get("/e/wheel/register", headers={"Accept-Language": "ja"})
    assert "お名前" in japanese.get_data(as_text=True)
    print("wheel ok")
    """
)


@pytest.mark.slow
def test_an_installed_wheel_serves_its_pages(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = wheels.glob("keyparty-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    assert (target / "keyparty" / "templates" / "badges.html").exists()
    # -S: no site processing, so the checkout's editable install cannot
    # answer `import keyparty`; dependencies come from this venv's packages.
    env = {
        **os.environ,
        "PYTHONPATH": f"{target}{os.pathsep}{sysconfig.get_paths()['purelib']}",
        "KEYPARTY_INSTANCE": str(tmp_path / "instance"),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", SMOKE, str(target)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "wheel ok" in result.stdout
