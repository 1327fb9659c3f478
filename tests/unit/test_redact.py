"""mask_secrets: no password of a URL or connection string survives."""

import pytest

from jobworker.redact import MASK, mask_secrets

SECRET = "s3cr:et@x"


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://app:{SECRET}@db/jobs",
        f"postgres://app:{SECRET}@db:5432/jobs?sslmode=require",
        f"cannot open postgresql://app:{SECRET}@db/jobs: refused",
        f"postgresql:///jobs?host=db&password={SECRET}",
        f"postgresql:///jobs?PASSWORD={SECRET}&host=db",
        f"postgresql:///jobs?Password={SECRET}",
        f"host=db password={SECRET} dbname=jobs",
        f"host=db PASSWORD = {SECRET}",
        f"host=db password='{SECRET} with spaces' dbname=jobs",
        "host=db password='it\\'s " + SECRET + "'",
        f"mysql://root:{SECRET}@127.0.0.1/test",
    ],
)
def test_masks_the_password(text: str) -> None:
    masked = mask_secrets(text)
    assert SECRET not in masked
    assert "s3cr" not in masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app@db/jobs",
        "postgresql:///jobs?host=db",
        "sqlite:////var/lib/app/jobs.db",
        "memory:",
        "the password was wrong",
        "host=db passwordless=yes",
    ],
)
def test_leaves_text_without_a_password_alone(text: str) -> None:
    assert mask_secrets(text) == text


def test_keeps_the_rest_of_the_url() -> None:
    assert mask_secrets("postgresql://app:pw@db:5432/jobs?sslmode=require&x=1") == (
        "postgresql://app:***@db:5432/jobs?sslmode=require&x=1"
    )
    assert mask_secrets("host=db password=pw dbname=jobs") == "host=db password=*** dbname=jobs"


@pytest.mark.parametrize(
    "text",
    [
        repr(f"postgresql://app:{SECRET}@db/jobs?password={SECRET}"),
        repr(f"postgresql:///jobs?PASSWORD={SECRET}"),
        f'"host=db password={SECRET}"',
    ],
)
def test_masking_twice_changes_nothing_more(text: str) -> None:
    # A message masked once may be masked again where it is printed: the
    # closing quote of a quoted URL must survive.
    once = mask_secrets(text)
    assert SECRET not in once
    assert mask_secrets(once) == once
    assert once[-1] == text[-1]
