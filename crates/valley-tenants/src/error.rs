use valley_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("sealing: {0}")]
    Seal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
