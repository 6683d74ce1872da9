//! Step 6 of `two-node`: cluster DNS answers every node's pods.

use super::*;

/// `nslookup name` in `pod`: what it printed, whatever its exit status (it is 1 when any
/// search suffix has no answer).
pub(super) fn nslookup(kubectl: &Kubectl, pod: &str, name: &str) -> Result<String, String> {
    nslookup_at(kubectl, pod, name, None)
}

/// `nslookup name [server]` in `pod`: [`nslookup`], asking `server` instead of the pod's
/// resolv.conf when given.
fn nslookup_at(
    kubectl: &Kubectl,
    pod: &str,
    name: &str,
    server: Option<&str>,
) -> Result<String, String> {
    let mut arguments = vec!["exec", pod, "--", "nslookup", name];
    arguments.extend(server);
    let output = kubectl
        .output(&arguments)
        .map_err(|error| error.to_string())?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `kubectl get pods -o <output>` of CoreDNS's pods (those with the add-on's pod label).
fn coredns_pods(kubectl: &Kubectl, output: &str) -> crate::Result<String> {
    let (key, value) = kiln_manifests::COREDNS_POD_LABEL;
    kubectl.run(&[
        "-n",
        kiln_manifests::SYSTEM_NAMESPACE,
        "get",
        "pods",
        "-o",
        output,
        "-l",
        &format!("{key}={value}"),
    ])
}

/// Whether the cluster DNS forwards to upstream resolvers (its Corefile has `forward`).
pub(super) fn cluster_dns_forwards(cluster: &Cluster) -> bool {
    control_plane_manifests(cluster, paths::COREDNS_ADDON)
        .iter()
        .any(|file| std::fs::read_to_string(file).is_ok_and(|text| text.contains("forward . ")))
}

/// Whether kiln rendered the cluster DNS add-on (`coredns.yaml` among a control-plane node's
/// add-ons), which it does unless the spec says `options.cluster_dns = "none"`.
pub(super) fn cluster_dns_rendered(cluster: &Cluster) -> bool {
    !control_plane_manifests(cluster, paths::COREDNS_ADDON).is_empty()
}

/// Step 6, DNS: CoreDNS becomes ready (its `ready` plugin answers once it has synced with the
/// API), and from a pod on every node, whose `/etc/resolv.conf` the kubelet points at the
/// `kube-dns` Service with the cluster's search path, busybox's `nslookup` (its own resolver,
/// reading that file) resolves the `web` Service's full and short names and the API's
/// `kubernetes` Service's name to their ClusterIPs: the kubelets' `clusterDNS`, kube-proxy's
/// rules for the DNS Service, CoreDNS's image, its RBAC and its `kubernetes` plugin together.
/// A name outside the cluster is refused (REFUSED, not a timeout) unless the spec names
/// upstream resolvers.
pub fn cluster_dns(cluster: &mut Cluster, pods: &[Pod]) -> crate::Result<()> {
    const STEP: &str = "cluster DNS";
    let kubectl = cluster.kubectl.clone();
    let ready = wait_for("CoreDNS to be ready", CONVERGE_TIMEOUT, POLL, || {
        let ready = kubectl
            .run(&[
                "-n",
                kiln_manifests::SYSTEM_NAMESPACE,
                "get",
                "deployment",
                kiln_manifests::COREDNS_NAME,
                "-o",
                "jsonpath={.status.readyReplicas}",
            ])
            .map_err(|error| error.to_string())?;
        match ready.trim().parse::<u32>() {
            Ok(count) if count > 0 => Ok(count),
            _ => Err(format!(
                "no CoreDNS replica is ready:\n{}",
                coredns_pods(&kubectl, "wide").unwrap_or_else(|error| error.to_string())
            )),
        }
    })
    .map_err(|error| Error::check(STEP, error.to_string()))?;
    eprintln!("    CoreDNS: {ready} replica(s) ready");
    let service_ip = |namespace: &str, name: &str| -> crate::Result<String> {
        Ok(kubectl
            .run(&[
                "-n",
                namespace,
                "get",
                "service",
                name,
                "-o",
                "jsonpath={.spec.clusterIP}",
            ])?
            .trim()
            .to_owned())
    };
    let dns_ip = service_ip(
        kiln_manifests::SYSTEM_NAMESPACE,
        kiln_manifests::DNS_SERVICE_NAME,
    )?;
    let web_ip = service_ip("default", "web")?;
    let api_ip = service_ip("default", "kubernetes")?;
    let mut seen = BTreeSet::new();
    for pod in pods {
        if !seen.insert(pod.node.clone()) {
            continue;
        }
        let resolv = kubectl.run(&["exec", &pod.name, "--", "cat", "/etc/resolv.conf"])?;
        if !resolv
            .lines()
            .any(|line| line.split_whitespace().eq(["nameserver", dns_ip.as_str()]))
        {
            return Err(Error::check(
                STEP,
                format!(
                    "{}'s /etc/resolv.conf does not name kube-dns ({dns_ip}):\n{resolv}",
                    pod.name
                ),
            ));
        }
        let Some(domain) = resolv
            .lines()
            .filter_map(|line| line.strip_prefix("search "))
            .flat_map(str::split_whitespace)
            .find_map(|search| search.strip_prefix("default.svc."))
            .map(str::to_owned)
        else {
            return Err(Error::check(
                STEP,
                format!(
                    "{}'s /etc/resolv.conf has no default.svc.<domain> search:\n{resolv}",
                    pod.name
                ),
            ));
        };
        // The Service's full name, the API's, and the Service by its short name through the
        // search path (busybox's nslookup tries every search suffix and prints each answer, so
        // it exits 1 when any suffix has none: the answer is what is checked).
        for (name, ip) in [
            (format!("web.default.svc.{domain}"), &web_ip),
            (format!("kubernetes.default.svc.{domain}"), &api_ip),
            ("web".to_owned(), &web_ip),
        ] {
            let answer = wait_for(
                &format!("{name} to resolve in {}", pod.name),
                Duration::from_secs(120),
                POLL,
                || {
                    let output = nslookup(&kubectl, &pod.name, &name)?;
                    if output
                        .lines()
                        .any(|line| line.trim() == format!("Address: {ip}"))
                    {
                        Ok(output)
                    } else {
                        Err(format!("nslookup {name} printed:\n{output}"))
                    }
                },
            )
            .map_err(|error| Error::check(STEP, error.to_string()))?;
            let server = answer
                .lines()
                .find_map(|line| line.strip_prefix("Server:"))
                .map(str::trim)
                .unwrap_or("?");
            eprintln!(
                "    {} ({}): {name} -> {ip} (server {server})",
                pod.name, pod.node
            );
        }
        // A name outside the cluster, with no upstream resolvers in the spec: CoreDNS refuses it
        // (an answer, not a timeout). A lookup that times out is asked again: UDP through the
        // Service's DNAT loses a query now and then under TCG (the A and AAAA queries race in
        // conntrack), which is the network's doing, not CoreDNS's.
        let outside = "kiln-vm-test.example";
        let forwards = cluster_dns_forwards(cluster);
        let refused_by = |server: Option<&str>| {
            let output = nslookup_at(&kubectl, &pod.name, outside, server)?;
            if output.contains(&format!("can't find {outside}: REFUSED")) {
                Ok(())
            } else {
                Err(format!("nslookup {outside} printed:\n{output}"))
            }
        };
        let refused = wait_for(
            &format!("{outside} to be refused in {}", pod.name),
            Duration::from_secs(60),
            POLL,
            || refused_by(None),
        )
        .or_else(|through_service| {
            if forwards || matches!(through_service, Error::Interrupted) {
                return Err(through_service);
            }
            // Every query through the Service lost (a CI run saw a minute of it, with the
            // cluster's own names answered just before): ask each CoreDNS pod itself, which
            // still shows whether CoreDNS refuses the name or would let it hang.
            eprintln!(
                "    {} ({}): {outside} through kube-dns: {}; asking each CoreDNS pod",
                pod.name,
                pod.node,
                first_line(&through_service.to_string())
            );
            let ips = coredns_pods(&kubectl, "jsonpath={.items[*].status.podIP}")
                .map_err(|error| Error::check(STEP, error.to_string()))?;
            let ips: Vec<&str> = ips.split_whitespace().collect();
            if ips.is_empty() {
                return Err(Error::check(STEP, "no CoreDNS pod has an IP"));
            }
            for ip in ips {
                wait_for(
                    &format!("{outside} to be refused by CoreDNS at {ip} in {}", pod.name),
                    Duration::from_secs(60),
                    POLL,
                    || refused_by(Some(ip)),
                )
                .map_err(|error| Error::check(STEP, error.to_string()))?;
            }
            Ok(())
        });
        match refused {
            Ok(()) => eprintln!("    {} ({}): {outside} refused", pod.name, pod.node),
            Err(error) if forwards => eprintln!(
                "    {} ({}): {outside} not refused, as the spec forwards to upstream resolvers: {}",
                pod.name,
                pod.node,
                first_line(&error.to_string())
            ),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
