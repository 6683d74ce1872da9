//! The crate's one error type.

/// Why a kubeconfig could not be rendered or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PKI holds no certificate (or key) that the kubeconfig needs.
    #[error(
        "the PKI has no certificate `{name}` for {file}\n  help: issue the PKI from the same plan (kiln_pki::issue)"
    )]
    MissingCertificate {
        /// The certificate name, as in `kiln_spec::certificate_names`.
        name: String,
        /// The kubeconfig file that needs it.
        file: &'static str,
    },
    /// A kubeconfig could not be encoded as YAML (a bug: the model is plain data).
    #[error("could not encode the kubeconfig of context `{context}` as YAML: {message}")]
    Encode {
        /// The kubeconfig's current context.
        context: String,
        /// The encoder's message.
        message: String,
    },
    /// Text given to [`Kubeconfig::from_yaml`](crate::Kubeconfig::from_yaml) is not a
    /// kubeconfig kiln can represent.
    #[error("not a kiln kubeconfig: {message}")]
    Parse {
        /// The decoder's message, naming the offending field.
        message: String,
    },
}
