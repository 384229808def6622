#!/bin/sh
# Build the real control plane the tests start on loopback into bin/ (ignored):
# etcd (embed), kube-apiserver, kube-controller-manager, kube-scheduler (all
# k8s.io/kubernetes v1.36.3), kubectl and kwok (sigs.k8s.io/kwok v0.8.0).
# The first build on a new machine takes a while; the Go build cache makes the
# next ones take seconds. Prints one line per component and fails naming it.
set -eu
cd "$(dirname "$0")"
command -v go >/dev/null 2>&1 || { echo "controlplane: no Go toolchain on PATH (need go >= 1.26)" >&2; exit 2; }
mkdir -p bin logs
for pkg in ./etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
           k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/kwok/cmd/kwok; do
    name=$(basename "$pkg")
    start=$(date +%s)
    if ! go build -trimpath -ldflags='-s -w' -o "bin/$name" "$pkg" >"logs/build-$name.log" 2>&1; then
        echo "controlplane: building $name failed; see $(pwd)/logs/build-$name.log" >&2
        tail -5 "logs/build-$name.log" >&2
        exit 1
    fi
    echo "controlplane: built $name in $(( $(date +%s) - start )) s"
done
# kwok's own Stages (node heartbeat with a Lease, pods Running, deletion after the grace period),
# taken from the module rather than written here.
stages="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
mkdir -p bin/kwok-stages
for stage in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cp "$stages/$stage" bin/kwok-stages/
done
