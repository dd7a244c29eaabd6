//! The config loader on arbitrary file text and environment values: never
//! panics; an error names a key or the file.
#![no_main]
use herald_core::config::ConfigLoader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (file, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("HERALD_{}", k.to_ascii_uppercase()), v.to_string()))
        .collect();
    let mut loader = ConfigLoader::new();
    if let Err(e) = loader.file("fuzz.toml", file) {
        assert!(!e.to_string().is_empty());
        return;
    }
    if let Err(e) = loader.env(env).build() {
        assert!(!e.to_string().is_empty());
    }
});
