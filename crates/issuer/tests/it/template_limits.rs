//! The bounds of JWT templates: compiling takes work in proportion to the template's size (counted
//! in bytes allocated, on this thread), and templates past the size or nesting bounds are refused
//! with an error that says which bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use machine_auth_issuer::Template;
use serde_json::{Map, Value, json};

const MAX_TEMPLATE_DEPTH: usize = Template::MAX_DEPTH;
const MAX_TEMPLATE_SIZE: usize = Template::MAX_SIZE;

/// The system allocator, counting the bytes each thread asks for.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCATED.try_with(|allocated| allocated.set(allocated.get() + bytes));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated on this thread while compiling `claims`, and the result.
fn compile_counting(
    claims: &Map<String, Value>,
) -> (usize, Result<Template, machine_auth_issuer::TemplateError>) {
    let before = ALLOCATED.with(Cell::get);
    let compiled = Template::compile(claims);
    (ALLOCATED.with(Cell::get) - before, compiled)
}

fn size(claims: &Map<String, Value>) -> usize {
    serde_json::to_string(claims).unwrap().len()
}

/// `levels` objects nested under keys of `key_length` characters, the outermost being the claim
/// set and the innermost holding `innermost`.
fn nested(levels: usize, key_length: usize, innermost: Value) -> Map<String, Value> {
    let mut value = innermost;
    for level in (0..levels).rev() {
        let key = format!("{level:0>key_length$}");
        value = json!({ key: value });
    }
    match value {
        Value::Object(claims) => claims,
        _ => unreachable!("an object"),
    }
}

/// `width` claims, each a shortcode.
fn wide(width: usize) -> Value {
    Value::Object(
        (0..width)
            .map(|index| (format!("m{index:04}"), json!("{{user.id}}")))
            .collect(),
    )
}

#[test]
fn compiling_takes_work_in_proportion_to_the_size() {
    // Long keys at every level above a wide object: building each member's path from its
    // parent's would copy the whole path once per member.
    let small = nested(MAX_TEMPLATE_DEPTH - 1, 300, wide(800));
    let large = nested(MAX_TEMPLATE_DEPTH - 1, 600, wide(1600));
    let (small_size, large_size) = (size(&small), size(&large));
    assert!(small_size > 20_000 && large_size <= MAX_TEMPLATE_SIZE);
    let (small_work, compiled) = compile_counting(&small);
    compiled.unwrap();
    let (large_work, compiled) = compile_counting(&large);
    compiled.unwrap();
    assert!(
        small_work < 64 * small_size,
        "{small_work} bytes allocated for a template of {small_size}"
    );
    // Twice the size, at most about twice the work.
    let ratio = large_work as f64 / small_work as f64;
    let size_ratio = large_size as f64 / small_size as f64;
    assert!(
        ratio < size_ratio * 1.25,
        "{large_work} / {small_work} bytes for {large_size} / {small_size}"
    );

    // A static value nested deep is kept once, not copied again at every level.
    let text = "x".repeat(40_000);
    let deep_static = nested(MAX_TEMPLATE_DEPTH - 1, 1, json!([text]));
    let (work, compiled) = compile_counting(&deep_static);
    let compiled = compiled.unwrap();
    assert!(
        work < 3 * size(&deep_static),
        "{work} bytes allocated for a template of {}",
        size(&deep_static)
    );
    assert_eq!(compiled.render(&json!({})), deep_static);
}

#[test]
fn nesting_past_the_bound_is_refused() {
    // The claim set and 31 more levels: accepted, objects or arrays.
    let deepest = nested(MAX_TEMPLATE_DEPTH, 2, json!("{{user.id}}"));
    let template = Template::compile(&deepest).unwrap();
    assert_eq!(
        template.render(&json!({"user": {"id": "user_1"}})),
        nested(MAX_TEMPLATE_DEPTH, 2, json!("user_1"))
    );
    let mut array = json!("{{user.id}}");
    for _ in 1..MAX_TEMPLATE_DEPTH {
        array = json!([array]);
    }
    Template::compile(&Map::from_iter([("a".to_owned(), array.clone())])).unwrap();

    let too_deep = [
        nested(MAX_TEMPLATE_DEPTH + 1, 2, json!(1)),
        nested(MAX_TEMPLATE_DEPTH, 2, json!({})),
        Map::from_iter([("a".to_owned(), json!([array]))]),
        nested(100, 1, json!("{{user.id}}")),
        nested(1_000, 1, json!(null)),
    ];
    for claims in &too_deep {
        let (work, error) = compile_counting(claims);
        let error = error.unwrap_err();
        assert!(error.exceeds_limit(), "{error}");
        assert!(
            error.problem().contains("nested deeper than 32 levels"),
            "{error}"
        );
        // The path of the value that is one level too deep, built once for the error.
        assert_eq!(
            error.path().matches(['.', '[']).count(),
            MAX_TEMPLATE_DEPTH - 1,
            "{error}"
        );
        assert!(work < 64 * 1024, "{work} bytes allocated to refuse it");
    }

    // A template file nested 100 levels deep (serde_json reads up to 128).
    let text = format!("{}1{}", "{\"a\": ".repeat(100), "}".repeat(100));
    let error = Template::parse(&text).unwrap_err();
    assert!(error.exceeds_limit(), "{error}");
}

#[test]
fn a_template_larger_than_64_kib_is_refused() {
    let mut claims = json!({
        "numbers": [1, -2, 2.5, -3e-10, 12345678901234567890u64, true, false, null],
        "text": "é \"quoted\" \\ \n\t\u{1}\u{7f}\u{2028} {{user.id}} x",
        "nested": {"a": [{"b": "{{org.name || 'none'}}"}, []], "c": {}},
        "pad": "",
    });
    let padding = MAX_TEMPLATE_SIZE - serde_json::to_string(&claims).unwrap().len();
    claims["pad"] = json!("y".repeat(padding));
    let claims = claims.as_object().unwrap().clone();
    assert_eq!(size(&claims), MAX_TEMPLATE_SIZE);
    Template::compile(&claims).unwrap();

    let mut larger = claims.clone();
    larger["pad"] = json!("y".repeat(padding + 1));
    let error = Template::compile(&larger).unwrap_err();
    assert!(error.exceeds_limit(), "{error}");
    assert!(error.problem().contains("64 KiB"), "{error}");
    let mut escaped = claims.clone();
    escaped["pad"] = json!(format!("{}\n", "y".repeat(padding - 1)));
    assert!(Template::compile(&escaped).unwrap_err().exceeds_limit());

    // Many small claims add up as well, and a syntax error is not a limit.
    let many: Map<String, Value> = (0..8_000)
        .map(|index| (format!("c{index}"), json!(index)))
        .collect();
    assert!(size(&many) > MAX_TEMPLATE_SIZE);
    assert!(Template::compile(&many).unwrap_err().exceeds_limit());
    let syntax = Template::compile(json!({"a": "{{user.id"}).as_object().unwrap()).unwrap_err();
    assert!(!syntax.exceeds_limit());
}
