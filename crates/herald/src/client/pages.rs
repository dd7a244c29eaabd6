//! Paging through a list RPC from the command line: one page, or every page
//! with `--all` (refusing a server that hands back the same token twice),
//! and the hint that tells the user how to ask for the next page.

use std::future::Future;

use anyhow::bail;

use super::OutputFormat;

/// Calls `fetch(token)` from `first` on: once, or until the last page when
/// `all`; returns the items and the next page's token (empty when none).
/// `method` and `server` name the RPC in the error for a repeated token.
pub(crate) async fn collect<T, F, Fut>(
    first: String,
    all: bool,
    method: &str,
    server: &str,
    mut fetch: F,
) -> anyhow::Result<(Vec<T>, String)>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = first;
    loop {
        let (page, next) = fetch(token.clone()).await?;
        items.extend(page);
        if !all || next.is_empty() {
            return Ok((items, next));
        }
        if next == token {
            bail!("{method} at {server} returned the same page token twice ({token:?})");
        }
        token = next;
    }
}

/// After a listing: how to get the page after it (`what` = "endpoints",
/// "event types"), on stdout for text and stderr for JSON (which stays one
/// value).
pub(crate) fn hint_more(format: OutputFormat, what: &str, next: &str) {
    if next.is_empty() {
        return;
    }
    let token = herald_core::text::printable(next);
    match format {
        OutputFormat::Text => println!("more {what}: --page-token {token} (or --all)"),
        OutputFormat::Json => eprintln!("note: more {what}; next page: --page-token {token}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_page_all_pages_and_a_looping_server() {
        let pages = |t: String| async move {
            Ok(match t.as_str() {
                "" => (vec![1, 2], "a".to_string()),
                "a" => (vec![3], "b".to_string()),
                _ => (vec![4], String::new()),
            })
        };
        let (one, next) = collect(String::new(), false, "List", "s", pages)
            .await
            .unwrap();
        assert_eq!((one, next.as_str()), (vec![1, 2], "a"));
        let (all, next) = collect(String::new(), true, "List", "s", pages)
            .await
            .unwrap();
        assert_eq!((all, next.as_str()), (vec![1, 2, 3, 4], ""));
        let stuck = |_t: String| async { Ok((vec![0], "x".to_string())) };
        let e = collect("x".into(), true, "ListThings", "srv", stuck)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("ListThings at srv returned the same page token twice"),
            "{e}"
        );
    }
}
