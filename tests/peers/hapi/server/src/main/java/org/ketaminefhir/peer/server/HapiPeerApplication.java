package org.ketaminefhir.peer.server;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.rest.server.RestfulServer;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceTransactionManagerAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Import;

/**
 * HAPI FHIR 8.8.0 JPA server on an in-memory H2 database, R4 only: the EHR peer of our exchange tests.
 *
 * <p>Started by tests/peers/hapi_server.py as
 * {@code java -Xmx768m -cp ... org.ketaminefhir.peer.server.HapiPeerApplication --server.port=N
 * --kfhir.ig-package=/path/ig.tgz}; FHIR base {@code http://127.0.0.1:N/fhir}.
 *
 * <p>The data source, JPA and transaction manager are our own beans ({@link PeerJpaConfig}), so Spring Boot's
 * JDBC/JPA auto-configuration is off; Quartz (HAPI schedules its own jobs), Flyway, Thymeleaf and the
 * Elasticsearch client too.
 */
@SpringBootApplication(
		exclude = {
			DataSourceAutoConfiguration.class,
			DataSourceTransactionManagerAutoConfiguration.class,
			HibernateJpaAutoConfiguration.class,
			FlywayAutoConfiguration.class,
			QuartzAutoConfiguration.class,
			ThymeleafAutoConfiguration.class
		},
		// HAPI brings the Elasticsearch client along; without this Boot starts a sniffer polling localhost:9200.
		excludeName = {"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration"})
// SubscriptionChannelConfig: only for the IBrokerClient (in-memory message channels) that batch2 needs; no
// subscription matching or delivery is configured.
@Import({PeerJpaConfig.class, SubscriptionChannelConfig.class, JpaBatch2Config.class, Batch2JobsConfig.class})
public class HapiPeerApplication {

	public static void main(String[] args) {
		SpringApplication.run(HapiPeerApplication.class, args);
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServletRegistration(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> registration = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		registration.setLoadOnStartup(1);
		return registration;
	}
}
