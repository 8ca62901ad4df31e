package io.chronik.compat;

import java.time.Duration;

import org.apache.kafka.clients.admin.Admin;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/** One AdminClient per test class, opened before its first test and closed after its last. */
abstract class WithAdmin {
    protected static Admin admin;

    @BeforeAll
    static void openAdmin() {
        admin = Env.admin();
    }

    @AfterAll
    static void closeAdmin() {
        if (admin != null) {
            admin.close(Duration.ofSeconds(10));
            admin = null;
        }
    }
}
