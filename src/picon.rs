//! Channel logos: fetched from the receiver once, kept in a bounded on-disk cache.
//! TEMPORARY STUB
pub struct PiconConfig;
impl PiconConfig {
    pub fn from_settings(_s: &crate::config::Settings) -> PiconConfig {
        PiconConfig
    }
}
pub struct PiconCache;
impl PiconCache {
    pub fn new(_c: PiconConfig) -> std::io::Result<PiconCache> {
        Ok(PiconCache)
    }
    pub async fn respond(&self, _r: &crate::http::Request, _t: &str) -> crate::http::Response {
        crate::http::ErrorCode::NotFound.response()
    }
}
