-- name: VIP customers
-- description: Customers who spent over 100 and did not opt out
SELECT customer_id, email, phone, mobile_ad_id, country
FROM customers
WHERE lifetime_value > 100 AND NOT opted_out
