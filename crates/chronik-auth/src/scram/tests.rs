use super::*;

/// The client side, enough to drive the server in tests.
fn client_final(
    m: Mechanism,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
) -> String {
    let mut salt = None;
    let mut iterations = 0;
    let mut nonce = "";
    for f in server_first.split(',') {
        match f.split_at(2) {
            ("r=", v) => nonce = v,
            ("s=", v) => salt = Some(B64.decode(v).unwrap()),
            ("i=", v) => iterations = v.parse().unwrap(),
            _ => {}
        }
    }
    let salted = m.salted_password(password.as_bytes(), &salt.unwrap(), iterations);
    let client_key = m.hmac(&salted, b"Client Key");
    let stored_key = m.hash(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let sig = m.hmac(&stored_key, auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

fn credential(m: Mechanism, password: &str) -> ScramCredential {
    ScramCredential::from_password(m, password, MIN_ITERATIONS)
}

#[test]
fn rfc7677_test_vector() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let cred =
        ScramCredential::from_password_with_salt(Mechanism::ScramSha256, "pencil", salt, 4096);
    let mut s = ScramServer::with_nonce(
        Mechanism::ScramSha256,
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
    );
    let first = s
        .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |u| {
            assert_eq!(u, "user");
            Some(cred.clone())
        })
        .unwrap();
    assert_eq!(
        first,
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let done = s
        .client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
    assert_eq!(done.user, "user");
    assert_eq!(
        done.server_final,
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
}

#[test]
fn both_mechanisms_accept_the_right_password_and_refuse_a_wrong_one() {
    for m in Mechanism::ALL {
        let cred = credential(m, "right");
        for (password, ok) in [("right", true), ("wrong", false)] {
            let mut s = ScramServer::new(m);
            let bare = "n=alice,r=abcdefgh";
            let first = s
                .client_first(format!("n,,{bare}").as_bytes(), |_| Some(cred.clone()))
                .unwrap();
            let fin = client_final(m, password, bare, std::str::from_utf8(&first).unwrap());
            let got = s.client_final(fin.as_bytes());
            assert_eq!(got.is_ok(), ok, "{} {password}", m.name());
            if !ok {
                assert_eq!(got, Err(AuthError::InvalidCredentials(m.name())));
            }
            // Nothing more after the exchange.
            assert_eq!(
                s.client_final(fin.as_bytes()),
                Err(AuthError::Complete(m.name()))
            );
        }
    }
}

#[test]
fn an_unknown_user_gets_a_stable_challenge_and_the_same_error_as_a_wrong_password() {
    let m = Mechanism::ScramSha512;
    let challenge = |user: &str| {
        let mut s = ScramServer::with_nonce(m, "srv".into());
        let first = s
            .client_first(format!("n,,n={user},r=cli").as_bytes(), |_| None)
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        let fin = client_final(m, "anything", &format!("n={user},r=cli"), &first);
        (first, s.client_final(fin.as_bytes()))
    };
    let (a, ra) = challenge("ghost");
    // The public client agrees with the server too.
    let cred = credential(m, "pw");
    let mut client = crate::client::ScramClient::new(m, "a,b", "pw");
    let mut s = ScramServer::new(m);
    let first = s
        .client_first(&client.client_first(), |u| {
            (u == "a,b").then(|| cred.clone())
        })
        .unwrap();
    let done = s
        .client_final(&client.client_final(&first).unwrap())
        .unwrap();
    assert_eq!(done.user, "a,b");
    assert_eq!(client.verify_server_final(&done.server_final), Ok(()));
    assert!(client.verify_server_final(b"v=AAAA").is_err());
    let (b, _) = challenge("ghost");
    let (c, _) = challenge("other");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.ends_with(",i=4096"));
    assert_eq!(ra, Err(AuthError::InvalidCredentials(m.name())));
}

#[test]
fn a_client_nonce_repeated_in_front_is_accepted_as_kafka_does() {
    // librdkafka 2.0 (Debian's kcat) sends r=<client nonce><client nonce><server nonce> and
    // signs the message as it sent it; Kafka only checks that the nonce ends with its own.
    let m = Mechanism::ScramSha256;
    let cred = credential(m, "pw");
    let mut s = ScramServer::with_nonce(m, "srv".into());
    let first = s
        .client_first(b"n,,n=a,r=cli", |_| Some(cred.clone()))
        .unwrap();
    let first = String::from_utf8(first).unwrap();
    let salted = m.salted_password(b"pw", &cred.salt, cred.iterations);
    let client_key = m.hmac(&salted, b"Client Key");
    let without_proof = "c=biws,r=cliclisrv";
    let auth = format!("n=a,r=cli,{first},{without_proof}");
    let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    let fin = format!("{without_proof},p={}", B64.encode(proof));
    assert_eq!(
        s.client_final(fin.as_bytes()).map(|d| d.user),
        Ok("a".to_string())
    );
    // A nonce that does not end with the server's is still refused.
    let mut s = ScramServer::with_nonce(m, "srv".into());
    s.client_first(b"n,,n=a,r=cli", |_| Some(cred.clone()))
        .unwrap();
    assert!(matches!(
        s.client_final(b"c=biws,r=clisrvX,p=AAAA"),
        Err(AuthError::Malformed { .. })
    ));
}

#[test]
fn user_names_are_unescaped_and_authzid_must_match() {
    let m = Mechanism::ScramSha256;
    let mut seen = String::new();
    let mut s = ScramServer::new(m);
    s.client_first(b"n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=x", |u| {
        seen = u.to_string();
        None
    })
    .unwrap();
    assert_eq!(seen, "a,b=c");
    let mut s = ScramServer::new(m);
    assert_eq!(
        s.client_first(b"n,a=admin,n=alice,r=x", |_| None),
        Err(AuthError::InvalidCredentials(m.name()))
    );
}

#[test]
fn malformed_messages_are_refused_without_panicking() {
    let m = Mechanism::ScramSha256;
    let bad_first: [&[u8]; 12] = [
        b"",
        b"n",
        b"n,,",
        b"x,,n=a,r=b",
        b"p=tls-unique,,n=a,r=b",
        b"n,,m=ext,n=a,r=b",
        b"n,,n=,r=b",
        b"n,,n=a=ZZ,r=b",
        b"n,,n=a",
        b"n,,n=a,r=",
        b"n,,n=a,r=b\x01",
        &[0xff, 0xfe],
    ];
    for msg in bad_first {
        let mut s = ScramServer::new(m);
        assert!(
            matches!(
                s.client_first(msg, |_| None),
                Err(AuthError::Malformed { .. })
            ),
            "{msg:?}"
        );
    }
    let big = vec![b'a'; MAX_MESSAGE_BYTES + 1];
    assert!(ScramServer::new(m).client_first(&big, |_| None).is_err());
    // Delegation tokens are not supported.
    let mut s = ScramServer::new(m);
    assert_eq!(
        s.client_first(b"n,,n=a,r=b,tokenauth=true", |_| None),
        Err(AuthError::InvalidCredentials(m.name()))
    );
    let cred = credential(m, "pw");
    let bad_final: [&[u8]; 6] = [
        b"",
        b"c=biws,r=bsrv",
        b"c=eHl6,r=bsrv,p=AAAA",
        b"c=biws,r=other,p=AAAA",
        b"c=biws,r=bsrv,p=!!!",
        b"r=bsrv,c=biws,p=AAAA",
    ];
    for msg in bad_final {
        let mut s = ScramServer::with_nonce(m, "srv".into());
        s.client_first(b"n,,n=a,r=b", |_| Some(cred.clone()))
            .unwrap();
        assert!(
            matches!(s.client_final(msg), Err(AuthError::Malformed { .. })),
            "{msg:?}"
        );
    }
    // A short proof is a failed login, not a panic.
    let mut s = ScramServer::with_nonce(m, "srv".into());
    s.client_first(b"n,,n=a,r=b", |_| Some(cred.clone()))
        .unwrap();
    assert_eq!(
        s.client_final(b"c=biws,r=bsrv,p=AAAA"),
        Err(AuthError::InvalidCredentials(m.name()))
    );
    // Final before first.
    assert_eq!(
        ScramServer::new(m).client_final(b"c=biws,r=x,p=AAAA"),
        Err(AuthError::Complete(m.name()))
    );
}
