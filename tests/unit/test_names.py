import pytest

from netlab import names
from netlab.errors import ConfigError
from netlab.layout import Layout


def test_hashed_name_is_stable_and_fits():
    a = names.hashed_name("nl-", "some very long key that would never fit", names.IFNAME_MAX)
    b = names.hashed_name("nl-", "some very long key that would never fit", names.IFNAME_MAX)
    assert a == b
    assert len(a) == names.IFNAME_MAX
    assert a.startswith("nl-")
    assert names.hashed_name("nl-", "other key", names.IFNAME_MAX) != a


def test_fit_ifname_keeps_short_names():
    assert names.fit_ifname("eth0", "k") == "eth0"
    assert len(names.fit_ifname("x" * 20, "k")) == names.IFNAME_MAX


@pytest.mark.parametrize("prefix", ["nl-", "nl-t1a2b3c-"])
def test_valid_prefixes(prefix):
    assert Layout(prefix=prefix).node_netns("node1") == f"{prefix}node1"


@pytest.mark.parametrize("prefix", ["", "netlab-", "nl", "nl-UPPER-", "foo-nl-"])
def test_prefixes_that_would_escape_cleanup_are_refused(prefix):
    with pytest.raises(ConfigError):
        Layout(prefix=prefix)


@pytest.mark.parametrize("name", ["node1", "a", "web-1"])
def test_simple_names(name):
    assert names.check_simple_name("node", name) == name


@pytest.mark.parametrize("name", ["", "Node1", "-a", "a-", "a_b", "a" * 64, "a/b"])
def test_bad_simple_names(name):
    with pytest.raises(ConfigError, match="invalid node name"):
        names.check_simple_name("node", name)
