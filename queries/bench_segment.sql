-- name: Benchmark segment
-- description: Customers in France, Germany or Spain who spent over 100 and did not opt out
SELECT customer_id, email
FROM customers
WHERE country IN ('FR', 'DE', 'ES') AND lifetime_value > 100 AND NOT opted_out
