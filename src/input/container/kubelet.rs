//! Which pod and container a log file belongs to, from the names the kubelet (and Docker) give
//! the files — no API server needed:
//!
//! ```text
//! /var/log/containers/<pod>_<namespace>_<container>-<container id>.log      (a symlink, to:)
//! /var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart>.log[.<rotated at>]
//! /var/lib/docker/containers/<container id>/<container id>-json.log         (dockershim, Docker)
//! ```
//! Pod and namespace names are DNS names, so `_` cannot occur inside them: the split is exact.
//! A path of none of these shapes yields nothing, and its rows carry no pod columns.

use std::path::{Path, PathBuf};

/// What the file names say. Each field is set only when a name said it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub uid: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
}

/// Symlinks followed from the tailed path to the file itself.
const MAX_LINK_HOPS: usize = 4;

impl PodRef {
    /// The names of `path`, then of the files its symlinks lead to (once per file: a
    /// `read_link` per hop). A symlink that cannot be read ends the walk, not the file.
    pub fn resolve(path: &Path) -> PodRef {
        let mut found = PodRef::from_path(path);
        let mut at: PathBuf = path.to_path_buf();
        for _ in 0..MAX_LINK_HOPS {
            let Ok(target) = std::fs::read_link(&at) else {
                break;
            };
            at = match at.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target,
            };
            found.fill(PodRef::from_path(&at));
        }
        found
    }

    /// What the names of this one path say (pure).
    pub fn from_path(path: &Path) -> PodRef {
        fn name(p: Option<&Path>) -> Option<&str> {
            p.and_then(Path::file_name).and_then(|n| n.to_str())
        }
        let file = name(Some(path)).unwrap_or_default();
        let dir = name(path.parent());
        let grand = name(path.parent().and_then(Path::parent));
        if let Some(found) = containers_name(file) {
            return found;
        }
        if let (Some(container), Some(pod_dir)) = (dir, grand) {
            if is_restart_log(file) {
                if let Some([namespace, pod, uid]) = split3(pod_dir) {
                    return PodRef {
                        namespace: Some(namespace.into()),
                        pod: Some(pod.into()),
                        uid: Some(uid.into()),
                        container: Some(container.into()),
                        container_id: None,
                    };
                }
            }
            if file.strip_suffix("-json.log") == Some(container) && is_container_id(container) {
                return PodRef {
                    container_id: Some(container.into()),
                    ..PodRef::default()
                };
            }
        }
        PodRef::default()
    }

    /// Fills the fields this one lacks from `other`.
    fn fill(&mut self, other: PodRef) {
        let pairs = [
            (&mut self.namespace, other.namespace),
            (&mut self.pod, other.pod),
            (&mut self.uid, other.uid),
            (&mut self.container, other.container),
            (&mut self.container_id, other.container_id),
        ];
        for (mine, theirs) in pairs {
            if mine.is_none() {
                *mine = theirs;
            }
        }
    }
}

/// `<pod>_<namespace>_<container>-<id>.log`.
fn containers_name(file: &str) -> Option<PodRef> {
    let stem = file.strip_suffix(".log")?;
    let [pod, namespace, rest] = split3(stem)?;
    let (container, id) = rest.rsplit_once('-')?;
    if container.is_empty() || !is_container_id(id) {
        return None;
    }
    Some(PodRef {
        namespace: Some(namespace.into()),
        pod: Some(pod.into()),
        uid: None,
        container: Some(container.into()),
        container_id: Some(id.into()),
    })
}

/// Three non-empty parts split by `_`, else nothing.
fn split3(s: &str) -> Option<[&str; 3]> {
    let mut it = s.split('_');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c), None) if !a.is_empty() && !b.is_empty() && !c.is_empty() => {
            Some([a, b, c])
        }
        _ => None,
    }
}

/// A runtime's container id: hex, 12 characters at least (64 in full).
fn is_container_id(s: &str) -> bool {
    s.len() >= 12 && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<restart count>.log`, or a kubelet-rotated `<restart count>.log.<time>` (`.gz` too).
fn is_restart_log(file: &str) -> bool {
    let Some((n, rest)) = file.split_once('.') else {
        return false;
    };
    !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && (rest == "log" || rest.starts_with("log."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5f2b6c1d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

    fn r(ns: &str, pod: &str, uid: &str, c: &str, id: &str) -> PodRef {
        let o = |s: &str| (!s.is_empty()).then(|| s.to_string());
        PodRef {
            namespace: o(ns),
            pod: o(pod),
            uid: o(uid),
            container: o(c),
            container_id: o(id),
        }
    }

    #[test]
    fn kubelet_and_docker_names() {
        let uid = "8a1d3c2e-4b5f-4c6d-9e7f-0a1b2c3d4e5f";
        let cases = [
            (
                format!("/var/log/containers/web-7d4b9c-x2x_shop_nginx-proxy-{ID}.log"),
                r("shop", "web-7d4b9c-x2x", "", "nginx-proxy", ID),
            ),
            (
                format!("/var/log/pods/shop_web-7d4b9c-x2x_{uid}/nginx-proxy/0.log"),
                r("shop", "web-7d4b9c-x2x", uid, "nginx-proxy", ""),
            ),
            (
                format!("/var/log/pods/shop_web_{uid}/app/3.log.20261207-050000"),
                r("shop", "web", uid, "app", ""),
            ),
            (
                format!("/var/lib/docker/containers/{ID}/{ID}-json.log"),
                r("", "", "", "", ID),
            ),
            // not these shapes
            (
                "/var/log/containers/web_shop_nginx.log".into(),
                PodRef::default(),
            ),
            (
                format!("/var/log/containers/a_b_c_d-{ID}.log"),
                PodRef::default(),
            ),
            (
                format!("/var/log/containers/_shop_nginx-{ID}.log"),
                PodRef::default(),
            ),
            ("/var/log/pods/shop_web/app/0.log".into(), PodRef::default()),
            ("/var/log/syslog".into(), PodRef::default()),
            ("/".into(), PodRef::default()),
        ];
        for (path, want) in cases {
            assert_eq!(PodRef::from_path(Path::new(&path)), want, "{path}");
        }
    }

    #[test]
    fn symlinks_into_var_log_pods_add_the_pod_uid() {
        let dir = tempfile::tempdir().expect("tmp");
        let uid = "0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f";
        let pods = dir.path().join(format!("pods/shop_web_{uid}/app"));
        std::fs::create_dir_all(&pods).expect("mkdir");
        std::fs::write(pods.join("0.log"), b"").expect("write");
        let links = dir.path().join("containers");
        std::fs::create_dir_all(&links).expect("mkdir");
        let link = links.join(format!("web_shop_app-{ID}.log"));
        // relative, as some runtimes make them
        std::os::unix::fs::symlink(format!("../pods/shop_web_{uid}/app/0.log"), &link)
            .expect("symlink");
        assert_eq!(PodRef::resolve(&link), r("shop", "web", uid, "app", ID));
        let missing = links.join(format!("gone_shop_app-{ID}.log"));
        assert_eq!(PodRef::resolve(&missing), r("shop", "gone", "", "app", ID));
    }
}
