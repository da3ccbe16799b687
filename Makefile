# OWO entry points. `make run` and `make test` install what is missing on Debian/Ubuntu first.

# Debian packages the build and the tests need: clang + libbpf headers for the eBPF side,
# a C toolchain for Rust linking and the ABI layout test, python3 for test programs, and for
# the control-plane tests a real dbus-daemon, logrotate, systemd-analyze, setpriv and groff, and
# for the remote tests openssl (test certificates) and a real nats-server, and for a hash read
# that never returns a FUSE file system (fuse3, python3-fusepy).
DEB_PACKAGES := clang libbpf-dev linux-libc-dev build-essential pkg-config python3 procps \
	dbus logrotate systemd util-linux groff-base openssl nats-server rsyslog rsyslog-relp rsyslog-gnutls \
	fuse3 python3-fusepy
# The kernel matrix (make vm-test) boots each kernel under QEMU from a busybox initramfs, and
# takes modules out of xz- or zstd-compressed kernel packages.
VM_PACKAGES := qemu-system-x86 busybox-static cpio xz-utils zstd
# The peers `make bench` compares owod with (auditd, libbpf-tools' execsnoop), and its mixed load.
BENCH_PACKAGES := auditd libbpf-tools stress-ng
CARGO ?= cargo
OWOD := target/release/owod
CONFIG ?= config.yaml

.PHONY: deps build run test lint bench vm-test fuzz clean

deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)

build: deps
	$(CARGO) build --release --workspace

# Run owod with the repo's config and follow its records live. Ctrl-C stops it cleanly.
run: build
	@scripts/run-live.sh $(OWOD) $(CONFIG)

# The whole suite. As root the real eBPF tests run; OWO_REQUIRE_BPF=1 makes them fail, not skip.
test: deps
	$(CARGO) test --workspace

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks are not tests: they print ratios against a baseline measured in the same run.
bench: build
	@scripts/install-deps.sh $(BENCH_PACKAGES)
	$(CARGO) run --release -p owo-bench --bin table -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin exec-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin file-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin connect-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin remote-loop -- --owod $(OWOD)
	$(CARGO) run --release -p owo-bench --bin latency -- --owod $(OWOD)

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

clean:
	$(CARGO) clean
