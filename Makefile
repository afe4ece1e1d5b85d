# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
# vupy: the front door.  `make demo` and `make test` install what is missing
# (Debian packages as root, Python packages in .venv) and run.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
PREFIX ?= /usr/local
CC ?= cc
CFLAGS ?= -O2 -Wall -Wextra
DEBS := gcc make pkg-config libseccomp-dev python3-dev python3-venv iproute2 \
        curl socat util-linux procps gcc-multilib libc6-dev-i386 \
        liblwip-dev libvdeplug-dev vdeplug vde-switch libvdeplug-slirp libvdeplug-pcap ethtool \
        wget netcat-openbsd iputils-ping dnsutils dnsmasq-base iperf3 openssh-client \
        openssh-server nodejs groff-base man-db libpython3.11-testsuite
MAN_SOURCES := $(wildcard docs/*.[1-8].md)
MANDIR := build/man

COMMANDS := vupy vustack vumount vuumount

.PHONY: all deps venv lib man test demo bench install install-lib install-man install-commands clean

all: venv lib man

deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml setup.py csrc/build_native.py $(wildcard csrc/*.c csrc/*.h) \
                    vupy/_abi.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# An editable install has no data files (setuptools), so the venv's man
# pages, for `man` with the venv's bin on PATH, are put there by hand.
$(VENV)/share/man/.made: $(MANDIR)/.made $(VENV)/.installed
	cd $(MANDIR) && for f in man*/*; do install -D -m 644 $$f $(CURDIR)/$(VENV)/share/man/$$f; done
	touch $@

venv: deps $(VENV)/.installed $(VENV)/share/man/.made

# The C wrapper library: libmsocket.so (.so.0 by soname), libmsocket.a.
lib: csrc/libmsocket.so csrc/libmsocket.a

csrc/msocket.o: csrc/msocket.c csrc/msocket.h
	$(CC) $(CFLAGS) -fPIC -c -o $@ csrc/msocket.c

csrc/libmsocket.so.0: csrc/msocket.o
	$(CC) -shared -Wl,-soname,libmsocket.so.0 -o $@ $<

csrc/libmsocket.so: csrc/libmsocket.so.0
	ln -sf libmsocket.so.0 $@

csrc/libmsocket.a: csrc/msocket.o
	ar rcs $@ $<

# The man pages, from docs/NAME.SECTION.md (docs/mkman.py): build/man/man1, man2.
man: $(MANDIR)/.made

$(MANDIR)/.made: $(MAN_SOURCES) docs/mkman.py vupy/__init__.py
	rm -rf $(MANDIR)
	$(PYTHON) docs/mkman.py -o $(MANDIR) $(MAN_SOURCES) >/dev/null
	touch $@

# Everything: the commands, the C library, the man pages.
install: install-commands install-lib install-man

install-lib: lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 csrc/msocket.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 csrc/libmsocket.so.0 $(DESTDIR)$(PREFIX)/lib/
	ln -sf libmsocket.so.0 $(DESTDIR)$(PREFIX)/lib/libmsocket.so
	install -m 644 csrc/libmsocket.a $(DESTDIR)$(PREFIX)/lib/
	sed 's|@PREFIX@|$(PREFIX)|' csrc/msocket.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/msocket.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/msocket.pc

install-man: man
	cd $(MANDIR) && for f in man*/*; do install -D -m 644 $$f $(DESTDIR)$(PREFIX)/share/man/$$f; done

# vupy, vustack, vumount, vuumount in PREFIX/bin: links to the scripts of a
# venv of their own, PREFIX/lib/vupy, made with $(PYTHON), in which vupy is
# installed (not editable) with its dependencies.  A venv cannot be moved:
# no DESTDIR here (install-lib and install-man take one).
install-commands:
	@if [ -n "$(DESTDIR)" ]; then echo "make install: the commands' venv cannot be staged in DESTDIR;" \
		"make install-lib install-man DESTDIR=... installs the rest" >&2; exit 2; fi
	$(PYTHON) -m venv --clear $(PREFIX)/lib/vupy
	$(PREFIX)/lib/vupy/bin/pip install -q .
	install -d $(PREFIX)/bin
	for c in $(COMMANDS); do ln -sf ../lib/vupy/bin/$$c $(PREFIX)/bin/$$c; done

test: venv lib
	$(VENV)/bin/python -m pytest -q -ra tests

demo: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash demo/demo.sh

# Every benchmark (bench/all.py), its results and the machine in bench/results.json.
# compileall first, as pip does for a regular install: the start-up figure
# is then vupy's, not the bytecode compiler's (PYTHONDONTWRITEBYTECODE).
bench: venv
	$(VENV)/bin/python -m compileall -q vupy modules
	$(VENV)/bin/python bench/all.py --json bench/results.json

clean:
	rm -rf $(VENV) build *.egg-info vupy/_native.* vupy/lib vupy/include csrc/*.o csrc/libmsocket.*
