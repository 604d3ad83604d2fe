//! An axum `Router` on tunstack: `sudo cargo run -p demo --example axum_app -- --netns try`,
//! then `sudo ip netns exec try curl http://10.0.0.2:3000/hello/you`.

fn main() -> Result<(), String> {
    demo::apps::example_main(
        "axum",
        &[
            "curl http://10.0.0.2:3000/",
            "curl http://10.0.0.2:3000/hello/you",
            "curl -d 'echo me' http://10.0.0.2:3000/echo",
            "curl http://10.0.0.2:3000/sockets.json",
        ],
        |stack| async move {
            let listener = tunstack::tokio::TcpListener::bind(&stack, "10.0.0.2:3000").expect("bind");
            let app = demo::apps::router(stack);
            let _ = axum::serve(demo::apps::AxumListener(listener), app).await;
        },
    )
}
