/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * OWO's eBPF object: one translation unit so that every program shares the same maps. Each
 * monitor's programs live in their own header.
 */
#include "maps.bpf.h"
#include "process.bpf.h"
#include "file.bpf.h"
#include "net.bpf.h"
#include "privilege.bpf.h"
#include "module.bpf.h"
#include "write.bpf.h"
#include "ia32.bpf.h"
#include "uring.bpf.h"
#include "tamper.bpf.h"

char LICENSE[] SEC("license") = "GPL";
