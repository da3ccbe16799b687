# OWO entry points. `make run` and `make test` install what is missing on Debian/Ubuntu first.

# Debian packages the build and the tests need: clang + libbpf headers for the eBPF side,
# a C toolchain for Rust linking and the ABI layout test, python3 for test programs, and for
# the control-plane tests a real dbus-daemon, logrotate, systemd-analyze, setpriv and groff, and
# for the remote tests openssl (test certificates) and a real nats-server, and for a hash read
# that never returns a FUSE file system (fuse3, python3-fusepy), liburing for the io_uring
# test program, and bpftool and gdb to tamper with owod.
DEB_PACKAGES := clang libbpf-dev linux-libc-dev build-essential pkg-config python3 procps \
	dbus logrotate systemd util-linux groff-base openssl nats-server rsyslog rsyslog-relp rsyslog-gnutls \
	fuse3 python3-fusepy liburing-dev bpftool gdb
# On x86, a 32-bit C library to build the ia32 program the compat-syscall tests run.
ifeq ($(shell uname -m),x86_64)
DEB_PACKAGES += gcc-multilib
endif
# The kernel matrix (make vm-test) boots each kernel under QEMU from a busybox initramfs, and
# takes modules out of xz- or zstd-compressed kernel packages.
VM_PACKAGES := qemu-system-x86 busybox-static cpio xz-utils zstd
# The peers `make bench` compares owod with (auditd, libbpf-tools' execsnoop), its mixed load,
# and matplotlib for its plots.
BENCH_PACKAGES := auditd libbpf-tools stress-ng python3-matplotlib
CARGO ?= cargo
OWOD := target/release/owod
CONFIG ?= config.yaml

.PHONY: deps schemas build run test lint bench vm-test fuzz clean install uninstall deb package-test

# Where `make install` puts things: DESTDIR is prepended to every path (for a package's staging
# root), PREFIX is /usr/local unless given (the Debian package uses /usr). The config and the
# logrotate file go to /etc whatever the prefix: that is where owod and logrotate look.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
# systemd reads units from /usr/local/lib/systemd/system too; dbus-daemon reads policies only
# from /usr/share and /etc, so under another prefix the policy goes to /etc.
UNITDIR ?= $(PREFIX)/lib/systemd/system
DBUSPOLICYDIR ?= $(if $(filter /usr,$(PREFIX)),$(DATADIR)/dbus-1/system.d,/etc/dbus-1/system.d)
# Every page in man/, installed by its section.
MAN_PAGES := $(wildcard man/*.[578])
# The files `make install` owns, relative to DESTDIR (the config is installed only where there
# is none, and removed only if it is still the shipped one).
INSTALLED := $(SBINDIR)/owod $(BINDIR)/owoctl $(UNITDIR)/owod.service \
	$(DBUSPOLICYDIR)/org.owo.Observer1.conf $(SYSCONFDIR)/logrotate.d/owo \
	$(foreach page,$(MAN_PAGES),$(MANDIR)/man$(subst .,,$(suffix $(page)))/$(notdir $(page))) \
	$(DATADIR)/bash-completion/completions/owoctl $(DATADIR)/zsh/vendor-completions/_owoctl \
	$(DATADIR)/fish/vendor_completions.d/owoctl.fish

deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)

build: deps
	$(CARGO) build --release --workspace

# Run owod with the repo's config and follow its records live. Ctrl-C stops it cleanly.
run: build
	@scripts/run-live.sh $(OWOD) $(CONFIG)

# The official ECS field definitions and OCSF schema that the format tests check records
# against (from the npm registry and PyPI, pinned), in target/schemas.
schemas:
	@scripts/fetch-schemas.sh target/schemas

# The whole suite, then the package's. As root the real eBPF tests and the package test run;
# OWO_REQUIRE_BPF=1 makes them fail, not skip.
test: deps schemas
	$(CARGO) test --workspace
	$(MAKE) package-test

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks are not tests: they print ratios against a baseline measured in the same run.
# The table's text and the plots (bench/plot.py, from the JSON results in target/bench) go to
# bench/results/, which the README shows.
bench: build
	@scripts/install-deps.sh $(BENCH_PACKAGES)
	@mkdir -p bench/results
	bash -o pipefail -c '$(CARGO) run --release -p owo-bench --bin table -- --owod $(OWOD) | tee bench/results/table.txt'
	$(CARGO) run --release -p owo-bench --bin exec-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin file-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin connect-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin syscall-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin remote-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin latency -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin cpu-curve -- --owod $(OWOD)
	/usr/bin/python3 bench/plot.py $${OWO_BENCH_RESULTS:-target/bench} bench/results

# owod on Debian's 5.10, 6.1, 6.12 and newest kernels, each booted under QEMU with TCG (no KVM
# needed), every monitor checked in the guest; prints a kernel x monitor table, fails on any FAIL.
# VM_KERNELS="5.10 sid" runs a subset; kernels are cached in OWO_KERNEL_CACHE (~/.cache/owo-kernels).
vm-test: deps
	@scripts/install-deps.sh $(VM_PACKAGES)
	$(CARGO) build --release -p owod -p owo-vmtest
	scripts/vm-test.sh

# The fuzz targets (libFuzzer, through cargo-fuzz, on a nightly toolchain), each for
# FUZZ_SECONDS. What they find is left in fuzz/artifacts/. Seeds: the shipped config and rules,
# RELP answers, and an Elasticsearch bulk answer (format 1, status 200, 3 records sent) with an
# item delivered, one refused and one to send again.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := decode dns escape config rules relp http
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@mkdir -p fuzz/corpus/config fuzz/corpus/rules fuzz/corpus/relp fuzz/corpus/http
	@cp config.yaml fuzz/corpus/config/seed
	@cp owod/rules/builtin.yaml fuzz/corpus/rules/seed
	@printf '1 rsp 6 200 OK\n2 rsp 0\n3 serverclose 0\n' >fuzz/corpus/relp/seed
	@printf '\001\310\000\003{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,"error":{"type":"x"}}},{"create":{"status":429}}]}' >fuzz/corpus/http/seed
	for t in $(FUZZ_TARGETS); do \
		$(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# Install what a host needs from binaries built by `make build` (run that first, as the user who
# builds; `make install` only copies). The unit and the logrotate file name the binaries where
# they are installed.
install:
	@test -x target/release/owod -a -x target/release/owoctl || \
		{ echo "make install: no release binaries: run make build first" >&2; exit 1; }
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(DBUSPOLICYDIR) $(DESTDIR)$(SYSCONFDIR)/logrotate.d $(DESTDIR)$(SYSCONFDIR)/owo \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DATADIR)/bash-completion/completions $(DESTDIR)$(DATADIR)/zsh/vendor-completions \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0755 target/release/owod $(DESTDIR)$(SBINDIR)/owod
	install -m 0755 target/release/owoctl $(DESTDIR)$(BINDIR)/owoctl
	sed -e 's|/usr/sbin/owod|$(SBINDIR)/owod|; s|/usr/bin/owoctl|$(BINDIR)/owoctl|; s|/etc/owo/|$(SYSCONFDIR)/owo/|' \
		contrib/owod.service >$(DESTDIR)$(UNITDIR)/owod.service
	sed -e 's|/usr/bin/owoctl|$(BINDIR)/owoctl|' contrib/owo.logrotate >$(DESTDIR)$(SYSCONFDIR)/logrotate.d/owo
	chmod 0644 $(DESTDIR)$(UNITDIR)/owod.service $(DESTDIR)$(SYSCONFDIR)/logrotate.d/owo
	install -m 0644 contrib/org.owo.Observer1.conf $(DESTDIR)$(DBUSPOLICYDIR)/
	install -m 0644 $(filter %.5,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(filter %.7,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man7/
	install -m 0644 $(filter %.8,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man8/
	target/release/owoctl completions bash >$(DESTDIR)$(DATADIR)/bash-completion/completions/owoctl
	target/release/owoctl completions zsh >$(DESTDIR)$(DATADIR)/zsh/vendor-completions/_owoctl
	target/release/owoctl completions fish >$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/owoctl.fish
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/owo/config.yaml ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/owo/config.yaml (the shipped one is config.yaml here)"; \
	else \
		install -m 0640 config.yaml $(DESTDIR)$(SYSCONFDIR)/owo/config.yaml; \
	fi

# Remove what `make install` put there, and nothing else: the config only if it is unchanged
# (and /etc/owo if that leaves it empty). Records, the spool and the state stay.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if cmp -s config.yaml $(DESTDIR)$(SYSCONFDIR)/owo/config.yaml; then \
		rm -f $(DESTDIR)$(SYSCONFDIR)/owo/config.yaml; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/owo/config.yaml ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/owo/config.yaml: it was changed"; \
	fi
	@rmdir $(DESTDIR)$(SYSCONFDIR)/owo 2>/dev/null || true

# A Debian package of this tree, in target/deb/ (dpkg-deb; lintian checks it in package-test).
deb: build
	@scripts/install-deps.sh dpkg-dev
	scripts/build-deb.sh

# Build the package (as root only), check its contents and lintian's verdict, then `make
# install`/`uninstall` into a scratch directory, and install, remove and purge the package in a
# throwaway Debian root (mmdebstrap, from this machine's apt mirror).
package-test:
	@scripts/package-test.sh

clean:
	$(CARGO) clean
