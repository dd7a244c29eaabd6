//! What the registry-backed list RPCs share: page sizes, the one-extra-item
//! page split that yields `next_page_token`, and the "registry still loading"
//! answer.

use herald_registry::Registry;
use tonic::Status;

/// Default and largest page of a registry listing.
pub(crate) const DEFAULT_PAGE: usize = 50;
pub(crate) const MAX_PAGE: usize = 1000;

/// The page size a request asks for: 0 = the default, more than
/// [`MAX_PAGE`] refused.
pub(crate) fn page_size(requested: u32) -> Result<usize, Status> {
    match requested as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n > MAX_PAGE => Err(Status::invalid_argument(format!(
            "page_size: at most {MAX_PAGE}"
        ))),
        n => Ok(n),
    }
}

/// Splits a listing read with one item more than `size`: the page, and the
/// token of the next one (the last item's `key`; empty when none follows).
pub(crate) fn split<T>(
    mut items: Vec<T>,
    size: usize,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    if items.len() > size {
        items.truncate(size);
        let token = items.last().map(key).unwrap_or_default();
        (items, token)
    } else {
        (items, String::new())
    }
}

/// `UNAVAILABLE` until the node's registry has read the topic to its end.
pub(crate) fn ensure_loaded(registry: &Registry) -> Result<(), Status> {
    if registry.is_loaded() {
        Ok(())
    } else {
        Err(Status::unavailable(
            "the endpoint registry is still loading; retry shortly",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_splits() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_size(7).unwrap(), 7);
        let e = page_size(1001).unwrap_err();
        assert!(e.message().starts_with("page_size:"), "{e:?}");
        assert_eq!(
            split(vec![1, 2, 3], 2, |n| n.to_string()),
            (vec![1, 2], "2".into())
        );
        assert_eq!(
            split(vec![1, 2], 2, |n| n.to_string()),
            (vec![1, 2], String::new())
        );
    }
}
