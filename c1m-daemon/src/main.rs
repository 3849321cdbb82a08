fn main() {
    let obj = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/c1m"));
    println!("{}", obj.len());
}
