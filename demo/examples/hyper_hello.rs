//! A hyper 1.x server on tunstack: `sudo cargo run -p demo --example hyper_hello -- --netns try`,
//! then `sudo ip netns exec try curl http://10.0.0.2:8080/hi`.

fn main() -> Result<(), String> {
    demo::apps::example_main(
        "hyper (hyper_util::rt::TokioIo over tunstack::tokio::TcpStream)",
        &["curl http://10.0.0.2:8080/hi", "curl -d 'echo me' http://10.0.0.2:8080/", "curl -g http://[fd00::2]:8080/"],
        |stack| async move {
            let v4 = tunstack::tokio::TcpListener::bind(&stack, "10.0.0.2:8080").expect("bind");
            let v6 = tunstack::tokio::TcpListener::bind(&stack, "[fd00::2]:8080").expect("bind");
            tokio::join!(demo::apps::serve_hyper(v4), demo::apps::serve_hyper(v6));
        },
    )
}
