//! The static checks a parsed filter must pass (see the limits in
//! [`crate::filter`]): they make evaluation cost linear in the payload.

use cel::common::ast::{operators, ComprehensionExpr, EntryExpr, Expr, IdedExpr, SourceInfo};

use super::{position_for, FilterError, MAX_ADDITIONS, MAX_MESSAGE_CHARS, MAX_REFERENCES};
use crate::truncate_chars;

/// CEL's type names and namespaces, usable anywhere (`type(x) == int`), and
/// never shadowed by a payload field.
pub(super) const BUILTIN_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "optional",
    "string",
    "type",
    "uint",
];

/// Refuses what the module docs list as refused after parsing: nested
/// comprehensions, outer references inside a comprehension, too many
/// references, an obviously non-boolean result, and nodes the interpreter
/// cannot evaluate.
pub(super) fn check_tree(
    root: &IdedExpr,
    info: &SourceInfo,
    source: &str,
) -> Result<(), FilterError> {
    let at = |ids: &[u64]| position_for(info, source, ids);
    if let Some(found) = never_boolean(&root.expr) {
        return Err(FilterError::NotBoolean {
            position: at(&[root.id]),
            found,
        });
    }
    let (mut references, mut additions) = (0usize, 0usize);
    // (expression, the comprehension whose body it is in, if any)
    let mut stack: Vec<(&IdedExpr, Option<&ComprehensionExpr>)> = vec![(root, None)];
    while let Some((node, body_of)) = stack.pop() {
        match &node.expr {
            Expr::Unspecified => return Err(FilterError::Internal),
            Expr::Literal(_) => {}
            Expr::Ident(name) => {
                let own = body_of
                    .is_some_and(|c| *name == c.iter_var || c.iter_var2.as_ref() == Some(name));
                let accumulator = body_of.is_some_and(|c| *name == c.accu_var);
                let builtin = BUILTIN_NAMES.contains(&name.as_str());
                if body_of.is_some() && !(own || accumulator || builtin) {
                    return Err(FilterError::OuterReference {
                        name: truncate_chars(name, MAX_MESSAGE_CHARS),
                        position: at(&[node.id]),
                    });
                }
                if !accumulator && !builtin {
                    references += 1;
                    if references > MAX_REFERENCES {
                        return Err(FilterError::TooManyReferences {
                            position: at(&[node.id]),
                        });
                    }
                }
            }
            Expr::Call(call) => {
                if call.func_name == operators::ADD {
                    additions += 1;
                    if additions > MAX_ADDITIONS {
                        return Err(FilterError::TooManyAdditions {
                            position: at(&[node.id]),
                        });
                    }
                }
                stack.extend(call.target.iter().map(|t| (t.as_ref(), body_of)));
                stack.extend(call.args.iter().map(|a| (a, body_of)));
            }
            Expr::Select(select) => stack.push((&select.operand, body_of)),
            Expr::List(list) => stack.extend(list.elements.iter().map(|e| (e, body_of))),
            Expr::Map(map) => stack.extend(
                map.entries
                    .iter()
                    .flat_map(|e| entry_children(&e.expr, body_of)),
            ),
            Expr::Struct(s) => stack.extend(
                s.entries
                    .iter()
                    .flat_map(|e| entry_children(&e.expr, body_of)),
            ),
            Expr::Comprehension(c) => {
                if body_of.is_some() {
                    return Err(FilterError::NestedComprehension {
                        position: at(&[node.id, c.iter_range.id]),
                    });
                }
                // The range and the initial value are evaluated once, before
                // the loop; the rest once per element.
                stack.push((&c.iter_range, None));
                stack.push((&c.accu_init, None));
                for part in [&c.loop_cond, &c.loop_step, &c.result] {
                    stack.push((part, Some(c.as_ref())));
                }
            }
        }
    }
    Ok(())
}

fn entry_children<'e>(
    entry: &'e EntryExpr,
    body_of: Option<&'e ComprehensionExpr>,
) -> Vec<(&'e IdedExpr, Option<&'e ComprehensionExpr>)> {
    match entry {
        EntryExpr::StructField(f) => vec![(&f.value, body_of)],
        EntryExpr::MapEntry(m) => vec![(&m.key, body_of), (&m.value, body_of)],
    }
}

/// What `expr` evaluates to if it can never be a boolean.
fn never_boolean(expr: &Expr) -> Option<&'static str> {
    use cel::common::ast::LiteralValue as L;
    match expr {
        Expr::Literal(L::Boolean(_)) => None,
        Expr::Literal(L::Null) => Some("null"),
        Expr::Literal(L::String(_)) => Some("a string"),
        Expr::Literal(L::Bytes(_)) => Some("bytes"),
        Expr::Literal(_) => Some("a number"),
        Expr::List(_) => Some("a list"),
        Expr::Map(_) => Some("a map"),
        Expr::Call(call)
            if [
                operators::ADD,
                operators::SUBSTRACT,
                operators::MULTIPLY,
                operators::DIVIDE,
                operators::MODULO,
                operators::NEGATE,
            ]
            .contains(&call.func_name.as_str()) =>
        {
            Some("the result of arithmetic")
        }
        _ => None,
    }
}
