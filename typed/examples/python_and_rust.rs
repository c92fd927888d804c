//! The Rust half of `examples/python_and_rust.py`: a pricing service beside Python workers,
//! on one map. Python puts orders in as dicts (`serializer="json"`); this reads them as a
//! serde struct, writes each order's total as a float and counts what it did with `incr`,
//! which Python reads as a `float` and an `int`.
//!
//! ```text
//! cargo run --release -p shmap-typed --example python_and_rust -- NAME
//! ```

use serde::Deserialize;
use shmap_typed::{Json, Place, SharedHashMap};

#[derive(Deserialize, Debug)]
struct Order {
    item: String,
    qty: u32,
    unit_price: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .ok_or("usage: python_and_rust NAME")?;
    let place = Place::shm(name);
    // One map, three views of it: each handle has the key and value types of its entries.
    let orders = SharedHashMap::<(String, u32), Json<Order>>::attach(&place)?;
    let totals = SharedHashMap::<(String, u32), f64>::attach(&place)?;
    let counters = SharedHashMap::<String, i64>::attach(&place)?;

    let n = counters
        .get("orders")?
        .ok_or("no \"orders\" count in the map")?;
    for i in 0..u32::try_from(n)? {
        let Some(Json(order)) = orders.get(&("order".to_string(), i))? else {
            continue; // taken back by Python meanwhile
        };
        let total = f64::from(order.qty) * order.unit_price;
        totals.insert(&("total".to_string(), i), &total)?;
        counters.incr("priced", 1)?; // atomic beside Python's own incr of the same key
        println!("rust: {} x {} = {total:.2}", order.qty, order.item);
    }
    Ok(())
}
