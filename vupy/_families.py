"""Address families by name, as vustack(1) and `vupy run --default` spell them.

The names and aliases follow VUOS's vustack: `local`/`unix`, `inet`,
`inet6`, `netlink`, `packet`, plain numbers, and the aliases `ip` (every
family a kernel stack serves), `ipv4`/`ip4` and `ipv6`/`ip6`.
"""
import socket

AF_UNSPEC = socket.AF_UNSPEC

NAMES = {
    "unix": socket.AF_UNIX,
    "local": socket.AF_UNIX,
    "inet": socket.AF_INET,
    "inet6": socket.AF_INET6,
    "netlink": socket.AF_NETLINK,
    "packet": socket.AF_PACKET,
}

# The families a kernel network namespace serves, as VUOS's stacks do.
KERNEL_FAMILIES = frozenset(
    (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET)
)

ALIASES = {
    "ip": tuple(sorted(KERNEL_FAMILIES)),
    "ipv4": (socket.AF_INET,),
    "ip4": (socket.AF_INET,),
    "ipv6": (socket.AF_INET6,),
    "ip6": (socket.AF_INET6,),
}

# Kernel families are numbered below AF_MAX (46 on Linux 6.x).
AF_MAX = 46


def parse(text):
    """Families named by a comma list such as ``inet,ip6,17``.

    Returns a sorted tuple of family numbers; raises ValueError naming the
    first word that is not a family.
    """
    families = set()
    for word in text.split(","):
        word = word.strip().lower()
        if word in NAMES:
            families.add(NAMES[word])
        elif word in ALIASES:
            families.update(ALIASES[word])
        elif word.isdigit() and 0 < int(word) < AF_MAX:
            families.add(int(word))
        else:
            raise ValueError(f"unknown address family {word!r}")
    return tuple(sorted(families))


def name(family):
    """The name vustack prints for a family number."""
    for word, number in NAMES.items():
        if number == family and word != "local":
            return word
    return str(family)
