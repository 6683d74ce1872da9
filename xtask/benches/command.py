#!/usr/bin/env python3
"""Times `cargo xtask build-cluster` the way users run it: the whole process, through cargo,
after its first compile, configuration only (`--no-images`), and kubeadm's phases for one
node in the same run.

    python3 xtask/benches/command.py [--runs N] [--kubeadm PATH]

Cases (median and range of N runs each, wall clock):
  - 1000 nodes, cold: the HA-shaped spec of crates/cluster/benches/cluster.rs (3 control-plane
    and etcd nodes, a load balancer, 996 workers; 8,014 derivations) into an empty store;
  - 1000 nodes, no-op: the same again, everything in the store and the result in place;
  - two-node, cold and no-op: examples/two-node.toml;
  - kubeadm: `kubeadm init phase certs all` then `kubeadm init phase kubeconfig all` for the
    two-node example's control-plane node into a fresh directory (the kubeadm binary of the
    kiln store's Kubernetes build if --kubeadm is not given and one is there).
Every store, spec copy and result goes to a scratch directory, deleted afterwards. Before each
case the file systems are flushed (`sync`), so that no case is timed while the one before it is
still being written back.
"""

import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def big_spec(nodes: int) -> str:
    """The HA-shaped spec of crates/cluster/benches/cluster.rs, node for node."""
    text = (
        '[cluster]\nname = "bench"\nkubernetes_version = "1.20.2"\nservice_cidr = "10.32.0.0/16"\n'
        'pod_cidr = "10.64.0.0/14"\ncontrol_plane_mode = "systemd"\n\n[cluster.endpoint]\n'
        'mode = "load-balancer"\n\n[pki]\nissued_at = 2026-01-01T00:00:00Z\n'
    )
    for index in range(nodes):
        if index == 0:
            roles = '["load-balancer"]'
        elif index <= 3:
            roles = '["control-plane", "etcd"]'
        else:
            roles = '["worker"]'
        text += (
            f'\n[[nodes]]\nname = "node-{index}"\nroles = {roles}\n'
            f'addresses = ["172.16.{index // 250}.{index % 250 + 1}/16"]\n'
        )
    return text


def settled() -> None:
    """Flushes every file system, so the next case does not share the disk with the last."""
    os.sync()


def timed(args: list, cwd: pathlib.Path = ROOT) -> float:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{result.stderr.decode(errors='replace')}")
    return elapsed


def report(label: str, seconds: list) -> None:
    ms = sorted(value * 1000 for value in seconds)
    print(f"| {label} | {statistics.median(ms):.0f} ms | {ms[0]:.0f} to {ms[-1]:.0f} ms | {len(ms)} |")


def build(spec: pathlib.Path, store: pathlib.Path, out: pathlib.Path, cargo: bool = True) -> list:
    command = ["cargo", "xtask"] if cargo else [str(ROOT / "target/debug/xtask")]
    return [*command, "build-cluster", "--spec", str(spec), "--store", str(store),
            "--out", str(out), "--no-images"]


def find_kubeadm() -> pathlib.Path | None:
    store = pathlib.Path.home() / ".local/share/kiln/store"
    found = sorted(
        path for path in (store.glob("*-kubernetes-*/bin/kubeadm") if store.is_dir() else [])
        if re.fullmatch(r"[0-9a-f]{64}-kubernetes-[0-9]+\.[0-9]+\.[0-9]+", path.parent.parent.name)
    )
    return found[-1] if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kubeadm", type=pathlib.Path)
    args = parser.parse_args()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="kiln-bench-command-"))
    try:
        # The first run compiles the xtask if needed; it is not timed.
        first = scratch / "first"
        first.mkdir()
        shutil.copy(ROOT / "examples/two-node.toml", first / "two-node.toml")
        timed(build(first / "two-node.toml", first / "store", first / "out"))

        print("| case | median | range | runs |\n|---|---|---|---|")
        big = scratch / "big"
        big.mkdir()
        (big / "big.toml").write_text(big_spec(1000))
        settled()
        cold = [timed(build(big / "big.toml", big / f"store-{run}", big / "out"))
                for run in range(args.runs)]
        report("1000 nodes, cold (8,014 derivations)", cold)
        settled()
        noop = [timed(build(big / "big.toml", big / "store-0", big / "out"))
                for _ in range(args.runs)]
        report("1000 nodes, no-op", noop)

        two = scratch / "two"
        two.mkdir()
        shutil.copy(ROOT / "examples/two-node.toml", two / "two-node.toml")
        # The root secret is made on the first build; keep that out of the timed runs.
        timed(build(two / "two-node.toml", two / "store-warmup", two / "out"))
        settled()
        cold = [timed(build(two / "two-node.toml", two / f"store-{run}", two / "out"))
                for run in range(args.runs)]
        report("two-node, cold", cold)
        settled()
        noop = [timed(build(two / "two-node.toml", two / "store-0", two / "out"))
                for _ in range(args.runs)]
        report("two-node, no-op", noop)
        # The same without cargo's own start-up (its check that the xtask is fresh).
        settled()
        cold = [timed(build(two / "two-node.toml", two / f"store-bin-{run}", two / "out", False))
                for run in range(args.runs)]
        report("two-node, cold, the xtask binary alone", cold)
        settled()
        noop = [timed(build(two / "two-node.toml", two / "store-bin-0", two / "out", False))
                for _ in range(args.runs)]
        report("two-node, no-op, the xtask binary alone", noop)
        cargo = [timed(["cargo", "xtask", "--help"]) for _ in range(args.runs)]
        report("`cargo xtask --help` (cargo's start-up alone)", cargo)

        kubeadm = args.kubeadm or find_kubeadm()
        if kubeadm is None:
            print("kubeadm: not run; pass --kubeadm PATH")
            return
        version = kubeadm.parent.parent.name.rsplit("-", 1)[-1]
        runs = []
        for run in range(args.runs):
            directory = scratch / f"kubeadm-{run}"
            common = ["--cert-dir", str(directory / "pki")]
            start = time.perf_counter()
            for phase in (
                ["certs", "all", *common, "--apiserver-advertise-address", "192.168.50.11",
                 "--service-cidr", "10.32.0.0/24", "--service-dns-domain", "cluster.local",
                 "--control-plane-endpoint", "192.168.50.11:6443",
                 "--kubernetes-version", f"v{version}"],
                ["kubeconfig", "all", *common, "--kubeconfig-dir", str(directory),
                 "--apiserver-advertise-address", "192.168.50.11",
                 "--control-plane-endpoint", "192.168.50.11:6443", "--node-name", "node1",
                 "--kubernetes-version", f"v{version}"],
            ):
                timed([str(kubeadm), "init", "phase", *phase], cwd=scratch)
            runs.append(time.perf_counter() - start)
        report(f"kubeadm {version}: certs all + kubeconfig all, one node", runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
